/**
 * Solo5 backends: image inspection, manifests, libvirt XML, and deploying / supervising
 * unikernels under solo5-hvt, solo5-spt or QEMU (virtio).
 * @module
 */
export { NT_SOLO5_ABI, NT_SOLO5_MANIFEST, type ElfInfo, type ElfNote, findSolo5Note, readElfHeader, readElfNotes } from './elf.js';
export {
  MANIFEST_MAX_DEVICES,
  MANIFEST_NAME_MAX,
  type Solo5Device,
  type Solo5DeviceType,
  type Solo5Manifest,
  type Solo5ManifestEntry,
  decodeManifest,
  encodeManifest,
  formatManifestJson,
  parseManifestJson,
  validateDevices,
} from './manifest.js';
export {
  ABI_TARGET_IDS,
  type Solo5Abi,
  type Solo5ImageInfo,
  type Solo5Target,
  decodeAbi,
  formatAbiJson,
  inspectSolo5Image,
  parseSolo5Image,
} from './image.js';
export { type LibvirtOptions, libvirtXml } from './libvirt.js';
export { GUEST_CMDLINE_MAX, SOLO5_LOG_LEVELS, type Solo5LogLevel, escapeGuestArg, guestArgv, parseGuestCmdline } from './args.js';
export { type ConsoleLine, ConsoleRing, LineSplitter } from './console.js';
export { type ExitInfo, type ExitKind, type RestartPolicy, classifyExit, restartDelay, shouldRestart } from './exit.js';
export { type InterfaceCounters, type ProcessStats, type TenderVersion, parseSize, tenderVersion } from './host.js';
export {
  type BlockAttachment,
  type DeployOptions,
  type DeployPlan,
  type DeployTarget,
  type NetAttachment,
  type Provisioned,
  Unikernel,
  type UnikernelEvents,
  type UnikernelStats,
  checkDevices,
  deployUnikernel,
  planDeployment,
} from './deploy.js';
export { type BoundForward, type UserGateway, type UserGatewayOptions, type UserGatewayStats, startUserGateway, userGatewayAddresses } from './gateway.js';
export { type NamespaceMode, type UserNetAttachment, hasNetAdmin } from './user-net.js';
