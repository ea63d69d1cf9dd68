/**
 * The version handshake: this frontend's version (package.json, kept equal to
 * `mlnb.__version__` by tests/test_labextension.py) against the server's.
 */
declare const require: (module: string) => { version: string };

/** package.json's version (npm semver, e.g. `0.1.0-dev.0`). */
export const FRONTEND_VERSION: string = require('../package.json').version;

/** An npm version in Python's spelling: `0.1.0-dev.0` → `0.1.0.dev0`, `1.0.0-rc.1` →
 * `1.0.0rc1` (the same rule as tests/test_labextension.py). */
export function toPep440(version: string): string {
  const m = /^(\d+\.\d+\.\d+)(?:-(dev|alpha|beta|rc)\.?(\d+))?$/.exec(version);
  if (!m) {
    return version;
  }
  const [, release, pre, n] = m;
  if (!pre) {
    return release;
  }
  const spelled = { dev: '.dev', alpha: 'a', beta: 'b', rc: 'rc' }[pre];
  return `${release}${spelled}${n}`;
}

/** The message shown when the two differ, or null when they agree. */
export function mismatchMessage(serverVersion: string): string | null {
  const mine = toPep440(FRONTEND_VERSION);
  if (mine === serverVersion) {
    return null;
  }
  return (
    `mlnb's JupyterLab extension is ${mine} but the server has ${serverVersion}: ` +
    'run `pip install -U mlnb` and restart the Jupyter server.'
  );
}
