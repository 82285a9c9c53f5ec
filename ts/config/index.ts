/**
 * The `config.ts` DSL: `main`, device constructors, keys, npm packages, boot-argument splitting,
 * and the boot sequence the generated entry point runs.
 * @module
 */
export { bootArguments, parseArgv, quoteArgv } from './argv.js';
export {
  type BlockDevice,
  type BuildContext,
  type ConsoleDevice,
  type Device,
  type DeviceContext,
  type DeviceSpec,
  type DeviceValue,
  type PClock,
  type StackDeviceOptions,
  block,
  console,
  crunch,
  defaultKeys,
  defaultNet,
  device,
  dirKv,
  http,
  https,
  mclock,
  memKv,
  pcap,
  pclock,
  random,
  stack,
  tap,
  tarKv,
  vnet,
} from './devices.js';
export {
  type Config,
  type DeviceGraph,
  type DevicesOf,
  type GraphNode,
  type KeysOf,
  type MainOptions,
  type Start,
  type StartContext,
  checkTarget,
  deviceGraph,
  describeDot,
  describeText,
  main,
} from './dsl.js';
// HTTP over a stack (ts/http/), the host-socket stack (ts/host/) and the StackV4 interface
// (ts/stack/) are runtime code, not DSL: re-exported here because config.ts devices hand them out.
export { CONNECTION_ATTEMPT_DELAY_MS, type HttpClientOptions, type HttpDevice, type HttpListener, type LookupFunction, type TlsCredentials, httpOver } from '../http/over-stack.js';
export { type Key, type KeyOptions, type KeyStage, type KeyType, type KeyValue, type Param, formatDuration, key, parseDuration, parseKeyArguments } from './keys.js';
export { type PackagePin, type PackageSpec, dependencyValue, mergePackages, morganaRange, npmPackage } from './packages.js';
export { type BootManifest, EXIT, boot } from './runtime.js';
export { type SocketStack, type SocketStackOptions, socketStack } from '../host/socket-stack.js';
export type { StackV4, TcpListenerV4, TcpV4, UdpSocketV4 } from '../stack/stackv4.js';
export { type Forward, type TargetConfig, type TargetName, parseForward, targetConfig } from './targets.js';
