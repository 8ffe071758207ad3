/**
 * spec.networks and spec.domain.devices.interfaces (validate.ts's part): network names and
 * sources (one of pod, multus, resourceClaim; at most one pod network), interfaces referring to
 * them, their binding (masquerade, bridge, slirp = masquerade here; any other binding is a
 * requirement listed by the schema), MAC (unicast, not zero, unique), model, boot order (unique
 * across disks and interfaces: `bootOrders` is shared with the disks), link state, ACPI index.
 */
import { FieldReader, type Violations, q } from './field-reader';
import type { NormalizedInterface, VmiLimits } from './types';

const MAC_RE = /^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$/;
const BINDINGS = ['masquerade', 'bridge', 'slirp', 'sriov', 'macvtap', 'passt', 'passtBinding', 'binding'];
const NETWORK_SOURCES = ['pod', 'multus', 'resourceClaim'];
const NIC_MODELS = ['virtio', 'e1000', 'e1000e', 'rtl8139'];

export class NetworkReader extends FieldReader {
  constructor(v: Violations, private readonly limits: VmiLimits, private readonly bootOrders: Set<number>) {
    super(v);
    this.strict = false; // the schema walker reports unknown fields
  }

  read(ifValue: unknown, netValue: unknown): NormalizedInterface[] {
    const networks = new Map<string, { index: number; used: boolean }>();
    let podSeen = false;
    const netItems = netValue === undefined ? [] : this.list(netValue, 'spec.networks');
    netItems.forEach((item, i) => {
      const base = `spec.networks[${i}]`;
      const n = this.obj(item, base, ['name', ...NETWORK_SOURCES]);
      if (n === null) return;
      const name = this.entryName(n, base, networks, 'network');
      const present = NETWORK_SOURCES.filter((src) => n.has(src));
      if (present.length !== 1) this.v.add(base, `must set exactly one of ${NETWORK_SOURCES.join(', ')}`);
      else if (n.has('pod') && this.empty(n.get('pod'), `${base}.pod`) && podSeen) this.v.add(`${base}.pod`, 'at most one pod network is allowed');
      if (n.has('pod')) podSeen = true;
      if (name !== undefined) networks.set(name, { index: i, used: false });
    });

    const out: NormalizedInterface[] = [];
    const limit = { max: this.limits.maxInterfaces, noun: 'interfaces' };
    const items = ifValue === undefined ? [] : this.list(ifValue, 'spec.domain.devices.interfaces', limit);
    const names = new Set<string>();
    const macs = new Set<string>();
    items.forEach((item, i) => {
      const base = `spec.domain.devices.interfaces[${i}]`;
      const f = this.obj(item, base, ['name', 'macAddress', 'model', 'bootOrder', 'state', 'acpiIndex', ...BINDINGS]);
      if (f === null) return;
      const name = this.entryName(f, base, names, 'interface');
      this.refer(name, `${base}.name`, names, networks, 'network');
      let binding: 'masquerade' | 'bridge' | undefined;
      const given = BINDINGS.filter((b) => f.has(b));
      if (given.length !== 1) {
        this.v.add(base, `must set exactly one of ${BINDINGS.join(', ')}`);
      } else if (given[0] === 'masquerade' || given[0] === 'bridge' || given[0] === 'slirp') {
        // slirp (deprecated in KubeVirt) is QEMU user-mode networking: what masquerade is here.
        binding = given[0] === 'bridge' ? 'bridge' : 'masquerade';
        this.empty(f.get(given[0]), `${base}.${given[0]}`);
      } // any other binding is a requirement (schema)
      let bootOrder: number | null = null;
      if (f.has('bootOrder')) {
        const b = this.int(f.get('bootOrder'), `${base}.bootOrder`, 1, 65535);
        if (b !== undefined && this.bootOrders.has(b)) this.v.add(`${base}.bootOrder`, `duplicate bootOrder ${b}`);
        else if (b !== undefined) this.bootOrders.add(b);
        bootOrder = b ?? null;
      }
      let macAddress: string | null = null;
      if (f.has('macAddress')) macAddress = this.mac(f.get('macAddress'), `${base}.macAddress`, macs);
      const model = f.has('model') ? this.oneOf(f.get('model'), `${base}.model`, NIC_MODELS) : 'virtio';
      const acpiIndex = f.has('acpiIndex') ? this.int(f.get('acpiIndex'), `${base}.acpiIndex`, 1, 16383) : undefined;
      if (name !== undefined && binding !== undefined && model !== undefined) {
        out.push({ name, binding, macAddress, model, bootOrder, ...(f.get('state') === 'down' ? { linkDown: true } : {}), ...(acpiIndex === undefined ? {} : { acpiIndex }) });
      }
    });
    for (const [name, net] of networks) {
      if (!net.used) this.v.add(`spec.networks[${net.index}].name`, `no interface named ${q(name)}`);
    }
    return out;
  }

  private mac(value: unknown, field: string, seen: Set<string>): string | null {
    const s = this.str(value, field, { max: 64 });
    if (s === undefined) return null;
    if (!MAC_RE.test(s)) return this.refuse(field, `${q(s)} must look like aa:bb:cc:dd:ee:ff`) ?? null;
    const mac = s.toLowerCase();
    if ((parseInt(mac.slice(0, 2), 16) & 1) === 1) return this.refuse(field, `${mac} is a multicast address`) ?? null;
    if (mac === '00:00:00:00:00:00') return this.refuse(field, 'must not be all zeros') ?? null;
    if (seen.has(mac)) return this.refuse(field, `duplicate macAddress ${mac}`) ?? null;
    seen.add(mac);
    return mac;
  }
}
