// Runs LAN discovery and prints every snapshot as one JSON line: what the netns test runs inside the vCPE's
// namespace (where the agent itself runs), and a tool to see what the agent would see on a real LAN.
// usage: node watch.js --iface br0 [--poll-ms 1000] [--no-mdns]   (stops on SIGTERM, SIGINT or stdin closing)
import { createLogger } from '../../util/log.js';
import { LanDiscovery } from '../index.js';

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? (process.argv[i + 1] ?? def) : def;
}

const discovery = new LanDiscovery({
  lanInterface: arg('iface', 'br0'),
  mdns: !process.argv.includes('--no-mdns'),
  pollMs: Number(arg('poll-ms', '1000')),
  log: createLogger(arg('log', 'info')),
});

discovery.onChange((devices) => process.stdout.write(JSON.stringify(devices) + '\n'));

const stop = (): void => {
  discovery.stop();
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
process.stdin.on('end', stop);
process.stdin.resume();

await discovery.start();
process.stdout.write(JSON.stringify(discovery.snapshot()) + '\n');
