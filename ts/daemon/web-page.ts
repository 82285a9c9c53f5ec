/**
 * The daemon's web page: unikernels (state, CPU, memory, restarts, NET devices), a throughput
 * chart per unikernel, the console of the selected one (history, then new lines) and the event
 * log, redrawn on every `/events` snapshot. `data-*` attributes let tests read what it shows.
 * @module
 */

/** The page served at `/` by `morgana daemon serve --http`. */
export const DAEMON_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Morgana daemon</title>
<link rel="stylesheet" href="/assets/uplot.css">
<script src="/assets/uplot.js"></script>
<style>
  :root { --bg: #0f1419; --panel: #18202a; --ink: #e6e6e6; --dim: #8a99a8; --accent: #5ec4ff; }
  body { margin: 0; font: 14px/1.4 system-ui, sans-serif; background: var(--bg); color: var(--ink); }
  header { display: flex; gap: 1em; align-items: baseline; padding: .6em 1em; background: var(--panel); border-bottom: 1px solid #263241; }
  header h1 { font-size: 1.1em; margin: 0; }
  #status { color: var(--dim); } #status.live { color: #7bd88f; }
  main { display: grid; grid-template-columns: repeat(auto-fit, minmax(520px, 1fr)); gap: 1em; padding: 1em; }
  section { background: var(--panel); border-radius: 6px; padding: .6em .8em; overflow: auto; }
  section h2 { font-size: .95em; margin: 0 0 .5em; color: var(--dim); text-transform: uppercase; letter-spacing: .05em; }
  table { border-collapse: collapse; width: 100%; font: 12px/1.4 ui-monospace, monospace; }
  th, td { text-align: left; padding: 2px 6px; border-bottom: 1px solid #263241; white-space: nowrap; }
  th { color: var(--dim); font-weight: normal; }
  tr.selected td { background: #263241; }
  tbody tr { cursor: pointer; }
  pre { margin: 0; font: 12px/1.35 ui-monospace, monospace; white-space: pre-wrap; max-height: 24em; overflow: auto; }
  .wide { grid-column: 1 / -1; }
  .chart .label { font: 12px ui-monospace, monospace; color: var(--dim); }
</style>
</head>
<body>
<header><h1>Morgana daemon</h1><span id="status">connecting…</span><span id="updated"></span></header>
<main>
  <section class="wide"><h2>Unikernels</h2>
    <table id="unikernels"><thead><tr><th>name</th><th>state</th><th>pid</th><th>target</th><th>restarts</th><th>cpus</th><th>CPU s</th><th>RSS</th><th>uptime</th><th>NET devices</th><th>last exit</th></tr></thead><tbody></tbody></table></section>
  <section><h2>Network throughput per unikernel (Mbit/s, rx blue, tx orange)</h2><div id="charts"></div></section>
  <section><h2>Console <span id="console-name"></span></h2><pre id="console"></pre></section>
  <section class="wide"><h2>Events</h2>
    <table id="events"><thead><tr><th>time</th><th>type</th><th>name</th><th>reason</th><th>message</th><th>by</th></tr></thead><tbody></tbody></table></section>
</main>
<script>
(() => {
  const token = new URLSearchParams(location.search).get('token');
  const withToken = (p) => token ? p + (p.includes('?') ? '&' : '?') + 'token=' + encodeURIComponent(token) : p;
  const $ = (id) => document.getElementById(id);
  const esc = (s) => String(s ?? '').replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]);
  const charts = new Map();
  let previous, selected;
  const kib = (n) => n === undefined ? '' : n < 1024 ? n + ' KiB' : (n / 1024).toFixed(1) + ' MiB';
  const secs = (ms) => ms === undefined ? '' : (ms / 1000).toFixed(ms < 10000 ? 1 : 0) + ' s';

  function chart(id) {
    let c = charts.get(id);
    if (!c) {
      const box = document.createElement('div');
      box.className = 'chart';
      box.dataset.id = id;
      box.innerHTML = '<div class="label">' + esc(id) + ' <span class="last"></span></div>';
      $('charts').appendChild(box);
      const data = [[], [], []];
      const plot = new uPlot({ width: Math.max(320, $('charts').clientWidth - 10), height: 100, legend: { show: false }, scales: { x: { time: true } },
        axes: [{ stroke: '#8a99a8', grid: { stroke: '#263241' } }, { stroke: '#8a99a8', grid: { stroke: '#263241' }, size: 50 }],
        series: [{}, { stroke: '#5ec4ff', width: 1.5 }, { stroke: '#ffb454', width: 1.5 }] }, data, box);
      c = { plot, data, box };
      charts.set(id, c);
    }
    return c;
  }

  async function showConsole() {
    if (!selected) return;
    $('console-name').textContent = selected;
    const res = await fetch(withToken('/api/console/' + encodeURIComponent(selected) + '?count=500'));
    if (!res.ok) return;
    const lines = await res.json();
    const pre = $('console');
    const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    pre.textContent = lines.map((l) => (l.stream === 'stderr' ? '! ' : '') + l.line).join('\\n');
    pre.dataset.lines = String(lines.length);
    if (atBottom) pre.scrollTop = pre.scrollHeight;
  }

  function render(s) {
    $('updated').textContent = 'updated ' + new Date(s.time).toLocaleTimeString();
    if (!selected && s.unikernels.length) selected = s.unikernels[0].name;
    $('unikernels').querySelector('tbody').innerHTML = s.unikernels.map((u) =>
      '<tr data-name="' + esc(u.name) + '" data-state="' + esc(u.state) + '"' + (u.name === selected ? ' class="selected"' : '') + '>' +
      [u.name, u.state, u.pid, u.target, u.restarts, (u.cpus || []).join(','), secs(u.cpuMs), kib(u.rssKiB), secs(u.uptimeMs),
       [...u.nets.map((n) => n.name + '=' + n.tap), ...(u.ports || [])].join(' '), u.lastExit ? (u.lastExit.kind || '') + ' ' + (u.lastExit.code ?? u.lastExit.signal ?? '') : '']
        .map((c) => '<td>' + esc(c) + '</td>').join('') + '</tr>').join('');
    for (const tr of $('unikernels').querySelectorAll('tbody tr')) tr.onclick = () => { selected = tr.dataset.name; render(s); showConsole(); };
    const dt = previous ? (s.time - previous.time) / 1000 : 0;
    const before = new Map((previous?.unikernels ?? []).map((u) => [u.name, u]));
    const sum = (u, k) => u ? u.nets.reduce((a, n) => a + n[k], 0) : 0;
    for (const u of s.unikernels) {
      const c = chart(u.name);
      const p = before.get(u.name);
      const rate = (k) => (p && dt > 0 ? Math.max(0, sum(u, k) - sum(p, k)) * 8 / dt / 1e6 : 0);
      c.data[0].push(s.time / 1000); c.data[1].push(rate('rxBytes')); c.data[2].push(rate('txBytes'));
      if (c.data[0].length > 120) c.data.forEach((a) => a.shift());
      c.plot.setData(c.data);
      c.box.dataset.totalBytes = String(sum(u, 'rxBytes') + sum(u, 'txBytes'));
      c.box.querySelector('.last').textContent = rate('rxBytes').toFixed(1) + ' / ' + rate('txBytes').toFixed(1) + ' Mbit/s';
    }
    for (const [id, c] of charts) if (!s.unikernels.some((u) => u.name === id)) { c.plot.destroy(); c.box.remove(); charts.delete(id); }
    $('events').querySelector('tbody').innerHTML = s.events.slice().reverse().map((e) =>
      '<tr data-type="' + esc(e.type) + '" data-name="' + esc(e.name) + '">' + [e.time, e.type, e.name, e.reason, e.message, e.by].map((c) => '<td>' + esc(c) + '</td>').join('') + '</tr>').join('');
    previous = s;
  }

  function connect() {
    const events = new EventSource(withToken('/events'));
    events.addEventListener('snapshot', (e) => {
      $('status').textContent = 'live'; $('status').className = 'live';
      document.body.dataset.connected = 'true';
      render(JSON.parse(e.data));
      showConsole();
    });
    events.onerror = () => {
      $('status').textContent = 'reconnecting…'; $('status').className = '';
      document.body.dataset.connected = 'false';
      if (events.readyState === EventSource.CLOSED) setTimeout(connect, 1000);
    };
  }
  connect();
})();
</script>
</body>
</html>
`;
