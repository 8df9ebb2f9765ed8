// Bundles src/app.js and src/app.css into dist/ (minified ES module).
// The world-atlas countries JSON is imported by app.js and so ends up inside
// dist/app.js: the page fetches nothing from any other host at run time.
//
//   node build.mjs           build once
//   node build.mjs --watch   rebuild on change (development)
import { build, context } from 'esbuild';
import { gzipSync } from 'node:zlib';
import { readFileSync, mkdirSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

const root = dirname(fileURLToPath(import.meta.url));
const outdir = join(root, 'dist');
mkdirSync(outdir, { recursive: true });

// Large JSON (the world atlas) is emitted as JSON.parse('…'): V8 parses a JSON
// string faster than the same data written as an object literal.
const jsonAsString = {
  name: 'json-as-string',
  setup(b) {
    b.onLoad({ filter: /\.json$/ }, async (args) => {
      const text = JSON.stringify(JSON.parse(await readFile(args.path, 'utf8')));
      return { contents: `export default JSON.parse(${JSON.stringify(text)});`, loader: 'js' };
    });
  },
};

const common = {
  absWorkingDir: root,
  outdir,
  bundle: true,
  minify: true,
  target: ['es2020', 'chrome100', 'firefox100', 'safari15'],
  logLevel: 'warning',
};
const jsOptions = { ...common, entryPoints: { app: 'src/app.js' }, format: 'esm', plugins: [jsonAsString] };
const cssOptions = { ...common, entryPoints: { app: 'src/app.css' } };

if (process.argv.includes('--watch')) {
  const js = await context(jsOptions);
  const css = await context(cssOptions);
  await Promise.all([js.watch(), css.watch()]);
  console.log('watching src/ …');
} else {
  await Promise.all([build(jsOptions), build(cssOptions)]);
  for (const name of ['app.js', 'app.css']) {
    const buf = readFileSync(join(outdir, name));
    console.log(`dist/${name}: ${buf.length} bytes (${gzipSync(buf, { level: 9 }).length} gzip)`);
  }
}
