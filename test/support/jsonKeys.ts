/**
 * The keys that occur more than once in one object of a JSON text, as paths ("component",
 * "report.sms.status"). JSON.parse keeps the last value of a repeated key and hides the others,
 * so it cannot tell; strict JSON log pipelines reject such lines. Throws on text that is not JSON.
 */
export function duplicateKeys(text: string): string[] {
  JSON.parse(text); // the syntax check (escapes, numbers): below only walks a text known to be JSON
  const duplicates: string[] = [];
  let i = 0;
  const skipSpace = () => {
    while (i < text.length && " \t\n\r".includes(text[i]!)) i++;
  };
  const readString = (): string => {
    const start = i++;
    while (text[i] !== '"') i += text[i] === "\\" ? 2 : 1;
    i++;
    return JSON.parse(text.slice(start, i)) as string;
  };
  const expect = (chars: string): string => {
    skipSpace();
    const c = text[i++]!;
    if (!chars.includes(c)) throw new SyntaxError(`expected one of ${chars} at ${i - 1}`);
    return c;
  };
  const readValue = (path: string): void => {
    skipSpace();
    const c = text[i];
    if (c === "{") {
      i++;
      skipSpace();
      if (text[i] === "}") return void i++;
      const seen = new Set<string>();
      do {
        skipSpace();
        const key = readString();
        const at = path ? `${path}.${key}` : key;
        if (seen.has(key)) duplicates.push(at);
        seen.add(key);
        expect(":");
        readValue(at);
      } while (expect(",}") === ",");
    } else if (c === "[") {
      i++;
      skipSpace();
      if (text[i] === "]") return void i++;
      let n = 0;
      do readValue(`${path}[${n++}]`);
      while (expect(",]") === ",");
    } else if (c === '"') {
      readString();
    } else {
      // A number, true, false or null: JSON.parse above vouched for it.
      i += /^[^,}\]\s]+/.exec(text.slice(i))![0].length;
    }
  };
  readValue("");
  return duplicates;
}
