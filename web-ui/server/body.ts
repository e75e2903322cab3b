// Reading a JSON request body with a hard size limit (no body-parser package): the limit is enforced while
// streaming, so a client cannot make the agent buffer more than `limit` bytes, and bad UTF-8 or JSON is a 400.
import type { IncomingMessage } from 'node:http';
import { InputError } from '../../agent/src/types/errors.js';
import { PayloadTooLargeError, UnsupportedMediaTypeError } from './errors.js';

export const DEFAULT_BODY_LIMIT = 16 * 1024;

/** True when the Content-Type is JSON (`application/json`, any parameters such as charset=utf-8). */
export function isJsonType(contentType: string | undefined): boolean {
  if (!contentType) return false;
  const base = contentType.split(';')[0]!.trim().toLowerCase();
  return base === 'application/json';
}

/**
 * The parsed JSON body, or undefined when the request has none. Throws PayloadTooLargeError (413),
 * UnsupportedMediaTypeError (415) or InputError (400, field "body").
 */
export async function readJsonBody(req: IncomingMessage, limit = DEFAULT_BODY_LIMIT): Promise<unknown> {
  const declared = req.headers['content-length'];
  const chunked = req.headers['transfer-encoding'] !== undefined;
  if (!chunked && (declared === undefined || declared === '0')) return undefined;
  if (!isJsonType(req.headers['content-type'])) throw new UnsupportedMediaTypeError();
  if (declared !== undefined && Number(declared) > limit) throw new PayloadTooLargeError(limit);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    // Stop reading at once; the response closes the connection (the rest of the body is never buffered).
    if (size > limit) throw new PayloadTooLargeError(limit);
    chunks.push(chunk);
  }
  if (size === 0) return undefined;
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(Buffer.concat(chunks));
  } catch {
    throw new InputError('the request body is not valid UTF-8', 'body');
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (e) {
    throw new InputError(`the request body is not valid JSON (${(e as Error).message.slice(0, 120)})`, 'body');
  }
}
