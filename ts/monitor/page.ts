/**
 * The dashboard page: one self-contained HTML document (styles and script inline; uPlot from
 * `/assets/`). It subscribes to `/events` and redraws the topology, the throughput charts, the
 * connection table, the caches, the drops and the log on every snapshot; the capture buttons
 * call `/api/captures`. Elements carry `data-*` attributes so tests (and scripts) can read what
 * the page shows.
 * @module
 */

/** The page served at `/`. */
export const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Morgana monitor</title>
<link rel="stylesheet" href="/assets/uplot.css">
<script src="/assets/uplot.js"></script>
<style>
  :root { --bg: #0f1419; --panel: #18202a; --ink: #e6e6e6; --dim: #8a99a8; --accent: #5ec4ff; --tx: #ffb454; --bad: #ff6b6b; }
  body { margin: 0; font: 14px/1.4 system-ui, sans-serif; background: var(--bg); color: var(--ink); }
  header { display: flex; gap: 1em; align-items: baseline; padding: .6em 1em; background: var(--panel); border-bottom: 1px solid #263241; }
  header h1 { font-size: 1.1em; margin: 0; }
  #status { color: var(--dim); }
  #status.live { color: #7bd88f; }
  main { display: grid; grid-template-columns: repeat(auto-fit, minmax(520px, 1fr)); gap: 1em; padding: 1em; }
  section { background: var(--panel); border-radius: 6px; padding: .6em .8em; overflow: auto; }
  section h2 { font-size: .95em; margin: 0 0 .5em; color: var(--dim); text-transform: uppercase; letter-spacing: .05em; }
  table { border-collapse: collapse; width: 100%; font: 12px/1.4 ui-monospace, monospace; }
  th, td { text-align: left; padding: 2px 6px; border-bottom: 1px solid #263241; white-space: nowrap; }
  th { color: var(--dim); font-weight: normal; }
  svg text { fill: var(--ink); font: 12px ui-monospace, monospace; }
  .chart { margin-bottom: .6em; }
  .chart .label { font: 12px ui-monospace, monospace; color: var(--dim); }
  pre { margin: 0; font: 12px/1.35 ui-monospace, monospace; white-space: pre-wrap; max-height: 18em; overflow: auto; }
  button { background: #263241; color: var(--ink); border: 1px solid #3a4a5c; border-radius: 4px; padding: 3px 10px; cursor: pointer; }
  .wide { grid-column: 1 / -1; }
  a { color: var(--accent); }
</style>
</head>
<body>
<header><h1 id="title">Morgana</h1><span id="status">connecting…</span><span id="updated"></span></header>
<main>
  <section class="wide"><h2>Topology</h2><svg id="topology" width="100%" height="220"></svg></section>
  <section><h2>Throughput per interface (Mbit/s, rx blue, tx orange)</h2><div id="charts"></div></section>
  <section><h2>Throughput per connection (Mbit/s, received + sent)</h2><div id="conn-charts"></div></section>
  <section class="wide"><h2>Connections</h2>
    <table id="connections"><thead><tr><th>stack</th><th>state</th><th>local</th><th>remote</th><th>rtt ms</th><th>cwnd</th><th>read</th><th>written</th><th>retrans</th></tr></thead><tbody></tbody></table></section>
  <section><h2>Interfaces</h2>
    <table id="interfaces"><thead><tr><th>interface</th><th>on</th><th>addresses</th><th>mtu</th><th>rx frames</th><th>tx frames</th><th>rx bytes</th><th>tx bytes</th><th>drops</th></tr></thead><tbody></tbody></table></section>
  <section><h2>ARP and neighbours</h2>
    <table id="neighbours"><thead><tr><th>stack</th><th>if</th><th>address</th><th>MAC</th><th>state</th></tr></thead><tbody></tbody></table></section>
  <section><h2>Drops and reasons</h2>
    <table id="drops"><thead><tr><th>stack</th><th>layer</th><th>reason</th><th>count</th></tr></thead><tbody></tbody></table></section>
  <section><h2>DHCP leases</h2>
    <table id="dhcp"><thead><tr><th>role</th><th>via</th><th>address</th><th>MAC</th><th>state</th><th>expires</th></tr></thead><tbody></tbody></table></section>
  <section><h2>IP reassembly</h2>
    <table id="reassembly"><thead><tr><th>stack</th><th>family</th><th>fragments</th><th>reassembled</th><th>pending</th><th>buffered</th></tr></thead><tbody></tbody></table></section>
  <section><h2>Forwards</h2>
    <table id="forwards"><thead><tr><th>protocol</th><th>host</th><th>guest</th><th>via</th></tr></thead><tbody></tbody></table></section>
  <section><h2>Capture</h2>
    <div><select id="capture-target"></select> <button id="capture-start">Start capture</button> <button id="capture-stop" disabled>Stop</button></div>
    <table id="captures"><thead><tr><th>id</th><th>switch</th><th>frames</th><th>bytes</th><th></th></tr></thead><tbody></tbody></table></section>
  <section class="wide"><h2>Log</h2><pre id="log"></pre></section>
</main>
<script>
(() => {
  const token = new URLSearchParams(location.search).get('token');
  const withToken = (path) => token ? path + (path.includes('?') ? '&' : '?') + 'token=' + encodeURIComponent(token) : path;
  const $ = (id) => document.getElementById(id);
  const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]);
  const HISTORY = 120;
  const charts = new Map();      // interface id -> { plot, data, last }
  const connCharts = new Map();  // connection id -> { plot, data, last }
  let previous;

  function bytesText(n) {
    if (n < 1024) return n + ' B';
    if (n < 1048576) return (n / 1024).toFixed(1) + ' KiB';
    if (n < 1073741824) return (n / 1048576).toFixed(1) + ' MiB';
    return (n / 1073741824).toFixed(2) + ' GiB';
  }

  function chart(container, map, id, label, series) {
    let c = map.get(id);
    if (!c) {
      const box = document.createElement('div');
      box.className = 'chart';
      box.dataset.id = id;
      box.innerHTML = '<div class="label">' + esc(label) + ' <span class="last"></span></div>';
      container.appendChild(box);
      const data = [[], ...series.map(() => [])];
      const plot = new uPlot({
        width: Math.max(320, container.clientWidth - 10), height: 110, legend: { show: false },
        scales: { x: { time: true } },
        axes: [{ stroke: '#8a99a8', grid: { stroke: '#263241' } }, { stroke: '#8a99a8', grid: { stroke: '#263241' }, size: 50 }],
        series: [{}, ...series.map((s) => ({ label: s.label, stroke: s.color, width: 1.5 }))],
      }, data, box);
      c = { plot, data, box };
      map.set(id, c);
    }
    return c;
  }

  function push(c, time, values, totalBytes) {
    c.data[0].push(time);
    values.forEach((v, i) => c.data[i + 1].push(v));
    if (c.data[0].length > HISTORY) c.data.forEach((a) => a.shift());
    c.plot.setData(c.data);
    c.box.dataset.lastMbps = String(values.reduce((a, b) => a + b, 0));
    c.box.dataset.totalBytes = String(totalBytes);
    c.box.querySelector('.last').textContent = values.map((v) => v.toFixed(1)).join(' / ') + ' Mbit/s';
  }

  function prune(map, alive) {
    for (const [id, c] of map) if (!alive.has(id)) { c.plot.destroy(); c.box.remove(); map.delete(id); }
  }

  function drawTopology(t) {
    const svg = $('topology');
    const columns = { host: 0, gateway: 1, switch: 2, stack: 3, tap: 4 };
    const perColumn = [0, 0, 0, 0, 0];
    const pos = new Map();
    const width = svg.clientWidth || 900;
    const colors = { host: '#c3a6ff', gateway: '#ffb454', switch: '#5ec4ff', stack: '#7bd88f', tap: '#ff6b6b' };
    for (const n of t.nodes) {
      const col = columns[n.kind] ?? 3;
      const row = perColumn[col]++;
      pos.set(n.id, { x: 20 + col * (width - 200) / 4, y: 30 + row * 42, n });
    }
    const height = Math.max(120, 40 + Math.max(...perColumn) * 42);
    svg.setAttribute('height', String(height));
    let out = '';
    for (const l of t.links) {
      const a = pos.get(l.from), b = pos.get(l.to);
      if (!a || !b) continue;
      out += '<line x1="' + (a.x + 80) + '" y1="' + a.y + '" x2="' + (b.x + 80) + '" y2="' + b.y + '" stroke="#3a4a5c" stroke-width="2"></line>';
    }
    for (const { x, y, n } of pos.values()) {
      out += '<g data-node-id="' + esc(n.id) + '" data-kind="' + n.kind + '"><rect x="' + x + '" y="' + (y - 13) + '" rx="5" width="170" height="26" fill="#0f1419" stroke="' + colors[n.kind] + '"></rect>' +
        '<text x="' + (x + 8) + '" y="' + (y + 4) + '">' + esc(n.label) + '</text></g>';
    }
    svg.innerHTML = out;
  }

  function rows(id, items, cells, key) {
    $(id).querySelector('tbody').innerHTML = items.map((item) =>
      '<tr' + (key ? ' data-id="' + esc(key(item)) + '"' : '') + '>' + cells(item).map((c) => '<td>' + esc(c ?? '') + '</td>').join('') + '</tr>').join('');
  }

  function render(s) {
    $('title').textContent = s.title;
    $('updated').textContent = 'updated ' + new Date(s.time).toLocaleTimeString();
    document.body.dataset.snapshotTime = String(s.time);
    drawTopology(s.topology);
    const t = s.time / 1000;
    const dt = previous ? (s.time - previous.time) / 1000 : 0;
    const before = new Map((previous?.interfaces ?? []).map((i) => [i.id, i]));
    for (const i of s.interfaces) {
      const c = chart($('charts'), charts, i.id, i.id + ' (' + i.medium + ')', [{ label: 'rx', color: '#5ec4ff' }, { label: 'tx', color: '#ffb454' }]);
      const p = before.get(i.id);
      const rate = (now, then) => (p && dt > 0 ? Math.max(0, now - then) * 8 / dt / 1e6 : 0);
      push(c, t, [rate(i.rxBytes, p?.rxBytes ?? 0), rate(i.txBytes, p?.txBytes ?? 0)], i.rxBytes + i.txBytes);
    }
    prune(charts, new Set(s.interfaces.map((i) => i.id)));
    const beforeConn = new Map((previous?.connections ?? []).map((c) => [c.id, c]));
    for (const k of s.connections) {
      const c = chart($('conn-charts'), connCharts, k.id, k.stack + ' ' + k.local + ' ↔ ' + k.remote, [{ label: 'Mbit/s', color: '#7bd88f' }]);
      const p = beforeConn.get(k.id);
      const moved = p ? (k.bytesRead - p.bytesRead) + (k.bytesWritten - p.bytesWritten) : 0;
      push(c, t, [dt > 0 ? Math.max(0, moved) * 8 / dt / 1e6 : 0], k.bytesRead + k.bytesWritten);
    }
    prune(connCharts, new Set(s.connections.map((c) => c.id)));
    rows('connections', s.connections, (c) => [c.stack, c.state, c.local, c.remote, c.rttMs === undefined || c.rttMs === null ? '' : c.rttMs.toFixed(2), c.cwnd, bytesText(c.bytesRead), bytesText(c.bytesWritten), c.retransmits], (c) => c.id);
    rows('interfaces', s.interfaces, (i) => [i.id, i.medium, i.addresses.join(' '), i.mtu, i.rxFrames, i.txFrames, bytesText(i.rxBytes), bytesText(i.txBytes), i.rxDropped + i.txDropped], (i) => i.id);
    rows('neighbours', [
      ...s.arp.map((a) => ({ stack: a.stack, iface: a.interface, address: a.address, mac: a.mac, state: a.expiresInMs === null ? 'static' : 'ARP ' + Math.round(a.expiresInMs / 1000) + ' s' })),
      ...s.neighbours.map((n) => ({ stack: n.stack, iface: n.interface, address: n.address, mac: n.mac, state: n.state + (n.router ? ' router' : '') })),
    ], (n) => [n.stack, n.iface, n.address, n.mac, n.state]);
    rows('drops', s.drops, (d) => [d.stack, d.layer, d.reason, d.count]);
    rows('forwards', s.forwards, (f) => [f.protocol, f.host, f.guest, f.via]);
    rows('dhcp', s.dhcp, (d) => [d.role, d.via, d.address, d.mac, d.state, d.expiresInMs === null ? '' : Math.round(d.expiresInMs / 1000) + ' s'], (d) => d.address);
    rows('reassembly', s.reassembly, (r) => [r.stack, r.family, r.fragments, r.reassembled, r.pendingDatagrams, bytesText(r.bufferedBytes)]);
    const log = $('log');
    const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
    log.textContent = s.log.join('\\n');
    if (atBottom) log.scrollTop = log.scrollHeight;
    // Capture targets: every switch (all its ports), then every stack interface (its device, TAP or other).
    const targets = [
      ...s.topology.nodes.filter((n) => n.kind === 'switch').map((n) => ({ value: 'switch:' + n.label, label: 'switch ' + n.label })),
      ...s.interfaces.map((i) => ({ value: 'interface:' + i.id, label: 'interface ' + i.id + ' (' + i.medium + ')' })),
    ];
    const select = $('capture-target');
    const wanted = targets.map((o) => o.value).join('|');
    if (select.dataset.targets !== wanted) {
      const chosen = select.value;
      select.innerHTML = targets.map((o) => '<option value="' + esc(o.value) + '">' + esc(o.label) + '</option>').join('');
      select.dataset.targets = wanted;
      if (targets.some((o) => o.value === chosen)) select.value = chosen;
    }
    previous = s;
  }

  async function refreshCaptures() {
    const list = await (await fetch(withToken('/api/captures'))).json();
    $('captures').querySelector('tbody').innerHTML = list.map((c) =>
      '<tr data-id="' + c.id + '" data-running="' + c.running + '"><td>' + c.id + '</td><td>' + esc(c.target) + '</td><td>' + c.frames + '</td><td>' + c.bytes + '</td><td>' +
      (c.running ? 'recording…' : '<a class="download" href="' + withToken('/api/captures/' + c.id + '.pcap') + '" download>download .pcap</a>') + '</td></tr>').join('');
    $('capture-stop').disabled = !list.some((c) => c.running);
  }
  let running;
  const captureBody = (value) => value.startsWith('interface:') ? { interface: value.slice('interface:'.length) } : { switch: value.slice('switch:'.length) };
  $('capture-start').onclick = async () => {
    const res = await fetch(withToken('/api/captures'), { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(captureBody($('capture-target').value)) });
    running = (await res.json()).id;
    await refreshCaptures();
  };
  $('capture-stop').onclick = async () => {
    if (running !== undefined) await fetch(withToken('/api/captures/' + running + '/stop'), { method: 'POST' });
    running = undefined;
    await refreshCaptures();
  };

  function connect() {
    const events = new EventSource(withToken('/events'));
    events.addEventListener('snapshot', (e) => {
      $('status').textContent = 'live';
      $('status').className = 'live';
      document.body.dataset.connected = 'true';
      render(JSON.parse(e.data));
      if (running !== undefined) refreshCaptures();
    });
    events.onerror = () => {
      $('status').textContent = 'reconnecting…';
      $('status').className = '';
      document.body.dataset.connected = 'false';
      // EventSource retries by itself while the server answers; after a refused connection it
      // gives up (readyState CLOSED), so start again.
      if (events.readyState === EventSource.CLOSED) setTimeout(connect, 1000);
    };
  }
  connect();
})();
</script>
</body>
</html>
`;
