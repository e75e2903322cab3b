// CSV as RFC 4180 §2 defines it (with the usual liberties of spreadsheets): fields separated by commas, records by
// CRLF or LF; a field in double quotes may hold commas, line breaks and doubled quotes (""); a UTF-8 byte order mark
// at the start is ignored. Each record carries the line it starts on, so an operator's error message can point at it.
// A record that cannot be read (a quote left open, text after a closing quote) is returned as an error record and
// reading goes on with the next line: one bad row does not hide the 9,999 good ones.

export type CsvRecord =
  | { readonly ok: true; readonly line: number; readonly fields: string[] }
  | { readonly ok: false; readonly line: number; readonly message: string };

/** Splits `text` into records. Blank lines (outside quotes) are skipped. Never throws. */
export function parseCsv(text: string): CsvRecord[] {
  const out: CsvRecord[] = [];
  let i = text.charCodeAt(0) === 0xfeff ? 1 : 0;
  let line = 1;
  const n = text.length;
  while (i < n) {
    const start = line;
    const recordStart = i;
    const fields: string[] = [];
    let field = '';
    let error: string | null = null;
    let atFieldStart = true;
    let quoted = false;
    let endOfRecord = false;
    while (i < n && !endOfRecord) {
      const c = text[i]!;
      if (quoted) {
        if (c === '"') {
          if (text[i + 1] === '"') {
            field += '"';
            i += 2;
          } else {
            quoted = false;
            i++;
            // After the closing quote only a separator or the end of the record may follow (RFC 4180 §2.5–2.7).
            const next = text[i];
            if (next !== undefined && next !== ',' && next !== '\n' && next !== '\r') error ??= `text after a closing quote in field ${fields.length + 1}`;
          }
        } else {
          if (c === '\n') line++;
          field += c;
          i++;
        }
        continue;
      }
      if (c === '"' && atFieldStart) {
        quoted = true;
        atFieldStart = false;
        i++;
      } else if (c === ',') {
        fields.push(field);
        field = '';
        atFieldStart = true;
        i++;
      } else if (c === '\r' || c === '\n') {
        i += c === '\r' && text[i + 1] === '\n' ? 2 : 1;
        line++;
        endOfRecord = true;
      } else {
        if (c === '"') error ??= `a quote inside unquoted field ${fields.length + 1} (quote the whole field and double the quote)`;
        field += c;
        atFieldStart = false;
        i++;
      }
    }
    if (quoted || (error !== null && line > start + 1)) {
      // A quote that never closes swallows the rest of the file, and one closed in the wrong place swallows the lines
      // up to it: report the record where it began, and read on from its next line as if the line had ended there
      // (a stray quote is a typo on one row, not the end of the data).
      out.push({ ok: false, line: start, message: quoted ? `a quoted field opened on line ${start} never closes` : error! });
      const nl = text.indexOf('\n', recordStart);
      if (nl < 0) break;
      i = nl + 1;
      line = start + 1;
      continue;
    }
    fields.push(field);
    if (error !== null) out.push({ ok: false, line: start, message: error });
    else if (!(fields.length === 1 && fields[0] === '')) out.push({ ok: true, line: start, fields });
  }
  return out;
}

/** Quotes a field when it needs it (RFC 4180 §2.6–2.7), for the files we write back (the manifest). */
export function csvField(s: string): string {
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}
