// The DC's two sockets from its configuration: the terminals' port (`listen`) and the NAT-probe port beside it
// (`probePort`, or the next one; docs/protocol.md §3.2). Opened by whoever starts the DC (cmd/run-dc.ts, the agent),
// which hands them to DcServer.start. With dc.workers > 1 every worker process opens both with `reusePort` (SO_REUSEPORT) (issue 15):
// the kernel spreads each port's datagrams over the workers by 4-tuple hash (dc/workers.ts).
import type { Bind } from '../types/net.js';
import type { SectionConfig } from '../config/schema.js';
import { UdpBind } from '../dataplane/conn/udp.js';

export async function openDcBinds(config: SectionConfig<'dc'>, reusePort = false): Promise<{ bind: Bind; probeBind: Bind }> {
  const bind = await UdpBind.open({ listen: config.listen, reusePort });
  const m = /:(\d+)$/.exec(config.listen);
  const host = config.listen.slice(0, config.listen.length - (m?.[0].length ?? 0));
  const probePort = config.probePort || bind.port + 1;
  try {
    return { bind, probeBind: await UdpBind.open({ listen: `${host}:${probePort}`, reusePort }) };
  } catch (e) {
    await bind.close();
    throw e;
  }
}
