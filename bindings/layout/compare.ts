// Compares the bindings' struct declarations (koffi's sizeof/offsetof) with what gcc computes for the installed
// Xen headers (probe.c). Used by test/bindings/layout.test.ts; a mismatch means the bindings would read or write
// the wrong bytes of a C struct.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import koffi from 'koffi';
import type { TypeObject } from '../koffi-types.js';
import * as S from '../structs.js';

export interface ProbeLayout {
  sizes: Map<string, number>;
  fields: Map<string, Map<string, { offset: number; size: number }>>;
  consts: Map<string, number>;
}

/** What the bindings declare: whole koffi structs, or (for xc_dom_image) individually placed fields. */
export type Declaration =
  | { tag: string; kind: 'struct'; type: TypeObject }
  | { tag: string; kind: 'fields'; fields: Record<string, { offset: number; type: string }> };

export function declaredLayouts(): Declaration[] {
  const structs: [string, TypeObject][] = [
    ['xen_arch_domainconfig', S.XenArchDomainConfig],
    ['xen_domctl_getdomaininfo', S.XcDomainInfo],
    ['xen_domctl_createdomain', S.XenDomctlCreateDomain],
    ['xen_sysctl_physinfo', S.XcPhysInfo],
    ['xc_error', S.XcError],
    ['e820entry', S.E820Entry],
    ['xc_hypercall_buffer', S.XcHypercallBuffer],
    ['xen_domctl_shadow_op_stats', S.XcShadowOpStats],
    ['precopy_stats', S.PrecopyStats],
    ['save_callbacks', S.SaveCallbacksStruct],
    ['restore_callbacks', S.RestoreCallbacksStruct],
  ];
  return [
    ...structs.map(([tag, type]) => ({ tag, kind: 'struct' as const, type })),
    { tag: 'xc_dom_image', kind: 'fields', fields: S.XC_DOM_IMAGE_FIELDS },
  ];
}

/** Constants of structs.ts the probe prints from the headers. */
export function declaredConstants(): Map<string, number> {
  const out = new Map<string, number>();
  for (const [name, value] of Object.entries(S)) if (typeof value === 'number') out.set(name, value);
  return out;
}

export function parseProbeOutput(text: string): ProbeLayout {
  const layout: ProbeLayout = { sizes: new Map(), fields: new Map(), consts: new Map() };
  for (const line of text.split('\n')) {
    const p = line.trim().split(/\s+/);
    if (p[0] === 'size' && p.length === 3) layout.sizes.set(p[1], Number(p[2]));
    else if (p[0] === 'field' && p.length === 5) {
      if (!layout.fields.has(p[1])) layout.fields.set(p[1], new Map());
      layout.fields.get(p[1])!.set(p[2], { offset: Number(p[3]), size: Number(p[4]) });
    } else if (p[0] === 'const' && p.length === 3) layout.consts.set(p[1], Number(p[2]));
    else if (line.trim() !== '') throw new Error(`unexpected probe line: ${line}`);
  }
  return layout;
}

/** Every difference between the declarations and the probe, one readable line each; [] when they agree. */
/** `consts` given: the constants are compared too, and every probed struct must be declared (a full check). */
export function compareLayouts(probe: ProbeLayout, decls: Declaration[], consts?: Map<string, number>): string[] {
  const problems: string[] = [];
  for (const d of decls) {
    const cFields = probe.fields.get(d.tag);
    if (!cFields) {
      problems.push(`${d.tag}: declared in the bindings but not probed`);
      continue;
    }
    const declared = new Map<string, { offset: number; size: number }>();
    if (d.kind === 'struct') {
      const cSize = probe.sizes.get(d.tag);
      const kSize = koffi.sizeof(d.type);
      if (cSize === undefined) problems.push(`${d.tag}: size not probed`);
      else if (cSize !== kSize) problems.push(`${d.tag}: sizeof is ${cSize} in C, ${kSize} in koffi`);
      for (const [name, m] of Object.entries(d.type.members ?? {})) {
        declared.set(name, { offset: koffi.offsetof(d.type, name), size: m.type.size });
      }
    } else {
      for (const [name, f] of Object.entries(d.fields)) declared.set(name, { offset: f.offset, size: koffi.sizeof(f.type) });
    }
    for (const [name, k] of declared) {
      const c = cFields.get(name);
      if (!c) {
        problems.push(`${d.tag}.${name}: declared in the bindings but not probed`);
        continue;
      }
      if (c.offset !== k.offset) problems.push(`${d.tag}.${name}: offset is ${c.offset} in C, ${k.offset} in the bindings`);
      if (c.size !== k.size) problems.push(`${d.tag}.${name}: size is ${c.size} in C, ${k.size} in the bindings`);
    }
    for (const name of cFields.keys()) {
      if (!declared.has(name)) problems.push(`${d.tag}.${name}: probed but not declared in the bindings`);
    }
  }
  if (consts) {
    for (const tag of probe.fields.keys()) {
      if (!decls.some((d) => d.tag === tag)) problems.push(`${tag}: probed but not declared in the bindings`);
    }
    for (const [name, cValue] of probe.consts) {
      const k = consts.get(name);
      if (k === undefined) problems.push(`const ${name}: in the headers (${cValue}) but not in the bindings`);
      else if (k !== cValue) problems.push(`const ${name}: ${cValue} in the headers, ${k} in the bindings`);
    }
  }
  return problems;
}

/** probe.c beside this module, or in the source tree when this runs compiled from dist/ (tsc copies no .c). */
export const PROBE_SOURCE = ((): string => {
  const here = dirname(fileURLToPath(import.meta.url));
  const beside = join(here, 'probe.c');
  return existsSync(beside) ? beside : join(here, '..', '..', '..', 'bindings', 'layout', 'probe.c');
})();
const HEADERS = ['/usr/include/xenctrl.h', '/usr/include/xenguest.h', '/usr/include/xen/domctl.h'];

/** Why the probe cannot be built here (missing compiler or headers), or undefined when it can. */
export function probeUnavailable(cc = process.env.CC ?? 'gcc'): string | undefined {
  const missing = HEADERS.filter((h) => !existsSync(h));
  if (missing.length) return `Xen headers missing (${missing.join(', ')}): install libxen-dev`;
  const r = spawnSync(cc, ['--version'], { encoding: 'utf8' });
  if (r.error || r.status !== 0) return `C compiler ${cc} not found: install gcc`;
  return undefined;
}

/** Compiles and runs probe.c against the installed headers; returns its output. */
export function runProbe(cc = process.env.CC ?? 'gcc'): string {
  const dir = mkdtempSync(join(tmpdir(), 'xenopsd-layout-'));
  try {
    const exe = join(dir, 'probe');
    const build = spawnSync(cc, ['-std=gnu11', '-Wall', '-Werror', '-o', exe, PROBE_SOURCE], { encoding: 'utf8' });
    if (build.status !== 0) throw new Error(`compiling ${PROBE_SOURCE} failed:\n${build.stderr}`);
    const run = spawnSync(exe, [], { encoding: 'utf8' });
    if (run.status !== 0) throw new Error(`running the layout probe failed: ${run.stderr}`);
    return run.stdout;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
