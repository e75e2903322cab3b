// A simulated network camera for the household testbed: whoever sends it a "subscribe" datagram on its UDP port
// gets a stream of numbered video-sized datagrams for a while (like an RTP stream after an RTSP PLAY). It knows
// nothing of NTMobile; it logs each subscriber (address:port) as a JSON line.
import dgram from 'node:dgram';

let port = 5004;
let seconds = 10;
let rate = 50;
let size = 1000;
for (let i = 2; i < process.argv.length; i++) {
  const v = process.argv[i + 1];
  if (process.argv[i] === '--port') port = Number(v);
  if (process.argv[i] === '--seconds') seconds = Number(v);
  if (process.argv[i] === '--rate') rate = Number(v);
  if (process.argv[i] === '--size') size = Number(v);
}

const log = (o: Record<string, unknown>) => process.stdout.write(JSON.stringify({ t: new Date().toISOString(), ...o }) + '\n');
const sock = dgram.createSocket({ type: 'udp6', ipv6Only: false });
sock.on('message', (msg, r) => {
  if (!msg.toString().startsWith('subscribe')) return;
  log({ event: 'subscribe', from: `${r.address.replace(/^::ffff:/, '')}:${r.port}` });
  let seq = 0;
  const frame = Buffer.alloc(size, 0x5a);
  const timer = setInterval(() => {
    frame.writeUInt32BE(seq++, 0);
    sock.send(frame, r.port, r.address);
    if (seq >= seconds * rate) {
      clearInterval(timer);
      log({ event: 'stream-done', to: r.address, frames: seq });
    }
  }, 1000 / rate);
});
sock.bind(port, '::', () => log({ event: 'listening', port }));
