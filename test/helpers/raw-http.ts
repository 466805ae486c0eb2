/** Exactly these bytes to a server, for requests an HTTP client would normalise (dot segments, bad encodings). */
import net from 'node:net';

/** The whole response text, once the server closes the connection (or after `ms`). */
export function rawRequest(url: string, bytes: string | Buffer, ms = 3000): Promise<string> {
  const u = new URL(url);
  return new Promise((resolve) => {
    const socket = net.connect(Number(u.port), u.hostname);
    let text = '';
    const timer = setTimeout(() => {
      socket.destroy();
      resolve(text);
    }, ms);
    socket.on('data', (d) => {
      text += d.toString('utf8');
    });
    const done = () => {
      clearTimeout(timer);
      resolve(text);
    };
    socket.on('error', done);
    socket.on('close', done);
    socket.write(bytes);
  });
}

/** The status code of a raw response. */
export const statusOf = (response: string) => Number(response.split(' ')[1]);
