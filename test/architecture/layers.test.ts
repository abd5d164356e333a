import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

/**
 * The folders show the pipeline: a module may import only from its own layer or the layers below.
 * The library (`src/`) never imports the codec server or the CLI, which sit on top of it.
 */
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

/** Lowest first. A file's layer is its first folder under src/ (or the file itself at the root). */
const LAYERS: Record<string, number> = {
  'errors.ts': 0,
  runtime: 0,
  model: 1,
  esdk: 2,
  keystore: 2,
  kek: 3,
  keyring: 4,
  rotation: 5,
  codec: 5,
  config: 6,
  temporal: 7,
  'open-keyring.ts': 8,
  'index.ts': 9,
};

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((entry) => {
    const path = join(dir, entry);
    if (statSync(path).isDirectory()) return sources(path);
    return path.endsWith('.ts') ? [path] : [];
  });
}

function relativeImports(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const found: string[] = [];
  for (const match of text.matchAll(/(?:from\s+|import\(\s*)['"](\.{1,2}\/[^'"]+)['"]/g)) {
    found.push(resolve(dirname(file), match[1]!));
  }
  return found;
}

function layerOf(path: string): string | undefined {
  const rel = relative(join(ROOT, 'src'), path);
  if (rel.startsWith('..')) return undefined;
  return rel.split('/')[0];
}

describe('layering', () => {
  const files = sources(join(ROOT, 'src'));

  it('keeps the library free of the codec server and the CLI', () => {
    const outside = files.flatMap((file) =>
      relativeImports(file)
        .filter((target) => layerOf(target) === undefined)
        .map((target) => `${relative(ROOT, file)} -> ${relative(ROOT, target)}`),
    );
    expect(outside).toEqual([]);
  });

  it('imports only from the same layer or the layers below', () => {
    const upward = files.flatMap((file) => {
      const from = layerOf(file)!;
      return relativeImports(file)
        .filter((target) => {
          const to = layerOf(target);
          return to !== undefined && (LAYERS[to] ?? 99) > (LAYERS[from] ?? -1);
        })
        .map((target) => `${relative(ROOT, file)} -> ${relative(ROOT, target)}`);
    });
    expect(upward).toEqual([]);
  });

  it('knows every folder of the library', () => {
    const unknown = readdirSync(join(ROOT, 'src')).filter((entry) => LAYERS[entry] === undefined);
    expect(unknown).toEqual([]);
  });
});

describe('one source of rotation policies', () => {
  // A rotator given policies of its own could plan with other limits than the meter enforces and
  // another propagation delay than the keyring holds: the CLI and the server take theirs from
  // OpenedKeyring.rotator(), which passes the keyring's own.
  it('the CLI and the codec server make rotators only through OpenedKeyring.rotator()', () => {
    const direct = ['cli', 'codec-server']
      .flatMap((dir) => sources(join(ROOT, dir)))
      .filter((file) => /new Rotator\s*\(/.test(readFileSync(file, 'utf8')))
      .map((file) => relative(ROOT, file));
    expect(direct).toEqual([]);
  });
});
