/**
 * Layer rules for src/, checked by `npm run lint:deps` (dependency-cruiser) in `npm test`'s unit
 * section. test/unit/dependency-rules.test.ts runs this very file against a fixture tree with a
 * cycle and a spec -> control import, so a rule that stops matching fails a test.
 *
 * Layers, bottom to top (an arrow is "may import"):
 *   util, errors, native, kvm, log, config   never import vmi, grpc, http, launcher(-protocol), app
 *   vmi/spec -> vmi/render -> vmi/control     one way; the domain never imports a transport
 *   launcher-protocol                          the handler<->launcher contract, imported by both ends
 *   launcher                                   the per-VMI process: never the handler's control or transports
 *   grpc, http, app, main                      transports and the composition root on top
 * Type-only imports count (tsPreCompilationDeps): a layer that needs an upper layer's type has
 * the type in the wrong place.
 */
/** Folders of src/ below the VMI domain and the transports. */
const LOWER = '^src/(util|errors|native|kvm|log|config)/';
/** What a lower layer must not import: the domain, the transports, the launcher, the entry points. */
const UPPER = '^src/((vmi|grpc|http|launcher|launcher-protocol)/|(app|main|daemon-process)\\.ts$)';

/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      severity: 'error',
      comment: 'An import cycle under src/: break it by moving what both sides need one layer down.',
      from: { path: '^src/' },
      to: { circular: true },
    },
    {
      name: 'spec-is-the-bottom-of-vmi',
      severity: 'error',
      comment: 'src/vmi/spec is the VMI API: it depends on nothing above it (render, control, transports, launcher).',
      from: { path: '^src/vmi/spec/' },
      to: { path: '^src/(vmi/(render|control)|grpc|http|launcher)/' },
    },
    {
      name: 'render-below-control',
      severity: 'error',
      comment: 'src/vmi/render turns a spec into domain XML and disk plans: it never imports control, transports or the launcher.',
      from: { path: '^src/vmi/render/' },
      to: { path: '^src/(vmi/control|grpc|http|launcher)/' },
    },
    {
      name: 'vmi-never-imports-a-transport',
      severity: 'error',
      comment: 'The VMI domain is served by grpc/ and http/, it never imports them.',
      from: { path: '^src/vmi/' },
      to: { path: '^src/(grpc|http)/' },
    },
    {
      name: 'launcher-protocol-is-a-contract',
      severity: 'error',
      comment: 'src/launcher-protocol is imported by both ends; it imports neither end (nor a transport).',
      from: { path: '^src/launcher-protocol/' },
      to: { path: '^src/(vmi/control|grpc|http|launcher)/' },
    },
    {
      name: 'launcher-is-not-the-handler',
      severity: 'error',
      comment: "The launcher process talks to the handler through src/launcher-protocol, never through the handler's control or transport code.",
      from: { path: '^src/launcher/' },
      to: { path: '^src/(vmi/control|grpc|http)/' },
    },
    {
      name: 'lower-layers-never-import-upper',
      severity: 'error',
      comment: 'util, errors, native, kvm, log and config sit below the domain, the transports and the entry points.',
      from: { path: LOWER },
      to: { path: UPPER },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    includeOnly: '^src/',
    tsPreCompilationDeps: true,
    moduleSystems: ['cjs', 'es6'],
  },
};
