// The bindings' struct layouts against gcc's for the installed Xen headers (bindings/layout/probe.c).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import koffi from 'koffi';
import {
  compareLayouts,
  declaredConstants,
  declaredLayouts,
  parseProbeOutput,
  probeUnavailable,
  runProbe,
  type Declaration,
  type ProbeLayout,
} from '../../bindings/layout/compare.js';
import { XEN_DOMCTL_GETDOMAININFO, XC_DOM_IMAGE_FIELDS } from '../../bindings/structs.js';

const skip = probeUnavailable();
let probe: ProbeLayout | undefined;
function probed(): ProbeLayout {
  probe ??= parseProbeOutput(runProbe());
  return probe;
}

test('every declared struct, field and constant matches the installed headers', { skip, timeout: 60_000 }, () => {
  const p = probed();
  const problems = compareLayouts(p, declaredLayouts(), declaredConstants());
  assert.deepEqual(problems, []);
  // The sizes the ABI notes state, so a probe that printed nothing could not pass.
  assert.equal(p.sizes.get('xen_domctl_getdomaininfo'), 112);
  assert.equal(p.sizes.get('xen_domctl_createdomain'), 64);
  assert.equal(p.consts.get('XEN_DOMCTL_INTERFACE_VERSION'), 0x15);
  assert.ok(p.fields.get('xc_dom_image')!.size >= Object.keys(XC_DOM_IMAGE_FIELDS).length);
});

test('self-check: a declaration with a wrong offset is reported', { skip, timeout: 60_000 }, () => {
  const p = probed();
  // Mutation 1: getdomaininfo with pad1 declared 32-bit, so flags moves from 4 to 8.
  const mutated: Declaration = {
    tag: 'xen_domctl_getdomaininfo',
    kind: 'struct',
    type: koffi.struct({ ...XEN_DOMCTL_GETDOMAININFO, pad1: 'uint32_t' }),
  };
  const problems = compareLayouts(p, [mutated]);
  assert.ok(problems.includes('xen_domctl_getdomaininfo.flags: offset is 4 in C, 8 in the bindings'), problems.join('\n'));
  assert.ok(problems.includes('xen_domctl_getdomaininfo: sizeof is 112 in C, 120 in koffi'), problems.join('\n'));
  // A member the bindings forgot is reported too.
  const { pad2: _dropped, ...withoutPad2 } = XEN_DOMCTL_GETDOMAININFO;
  const forgot = compareLayouts(p, [{ tag: 'xen_domctl_getdomaininfo', kind: 'struct', type: koffi.struct(withoutPad2) }]);
  assert.ok(forgot.includes('xen_domctl_getdomaininfo.pad2: probed but not declared in the bindings'), forgot.join('\n'));

  // Mutation 2: cpu_time declared 32-bit: its size and every later offset differ.
  const narrow: Declaration = {
    tag: 'xen_domctl_getdomaininfo',
    kind: 'struct',
    type: koffi.struct({ ...XEN_DOMCTL_GETDOMAININFO, cpu_time: 'uint32_t' }),
  };
  const narrowProblems = compareLayouts(p, [narrow]);
  assert.ok(narrowProblems.some((l) => l.startsWith('xen_domctl_getdomaininfo.cpu_time: size is 8 in C, 4')), narrowProblems.join('\n'));
  assert.ok(narrowProblems.some((l) => l.startsWith('xen_domctl_getdomaininfo.nr_online_vcpus: offset is 64 in C')));

  // Mutation 3: one xc_dom_image field placed 8 bytes off.
  const fields = { ...XC_DOM_IMAGE_FIELDS, xenstore_pfn: { ...XC_DOM_IMAGE_FIELDS.xenstore_pfn, offset: XC_DOM_IMAGE_FIELDS.xenstore_pfn.offset + 8 } };
  const domProblems = compareLayouts(p, [{ tag: 'xc_dom_image', kind: 'fields', fields }]);
  assert.deepEqual(domProblems, [
    `xc_dom_image.xenstore_pfn: offset is ${XC_DOM_IMAGE_FIELDS.xenstore_pfn.offset} in C, ${XC_DOM_IMAGE_FIELDS.xenstore_pfn.offset + 8} in the bindings`,
  ]);

  // Mutation 4: a constant that drifted.
  const consts = new Map(declaredConstants());
  consts.set('XEN_DOMCTL_INTERFACE_VERSION', 0x16);
  assert.ok(compareLayouts(p, [], consts).includes('const XEN_DOMCTL_INTERFACE_VERSION: 21 in the headers, 22 in the bindings'));
});

test('the comparison works on a hand-written probe output (no compiler needed)', () => {
  const p = parseProbeOutput(
    ['size xen_arch_domainconfig 8', 'field xen_arch_domainconfig emulation_flags 0 4', 'field xen_arch_domainconfig misc_flags 4 4'].join('\n'),
  );
  const decl = declaredLayouts().find((d) => d.tag === 'xen_arch_domainconfig')!;
  assert.deepEqual(compareLayouts(p, [decl]), []);
  const wrong = parseProbeOutput('size xen_arch_domainconfig 12\nfield xen_arch_domainconfig emulation_flags 0 4\nfield xen_arch_domainconfig misc_flags 8 4');
  assert.deepEqual(compareLayouts(wrong, [decl]), [
    'xen_arch_domainconfig: sizeof is 12 in C, 8 in koffi',
    'xen_arch_domainconfig.misc_flags: offset is 8 in C, 4 in the bindings',
  ]);
  assert.throws(() => parseProbeOutput('garbage line here and more'), /unexpected probe line/);
});
