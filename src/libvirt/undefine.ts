/**
 * Undefining a domain that may carry firmware state. libvirt refuses a plain undefine of a domain
 * with an NVRAM file ("cannot undefine domain with nvram"), and the test driver refuses the NVRAM
 * flag, so: a plain undefine first, and with VIR_DOMAIN_UNDEFINE_NVRAM only when libvirt asked for
 * it. An EFI VMI's NVRAM lives in its own directory (render/guest-devices.ts) and goes with it.
 */
import type { Domain } from './domain';
import { LibvirtError } from './errors';

/** Undefines `dom`, removing its NVRAM when it has one. */
export async function undefineDomain(dom: Domain): Promise<void> {
  try {
    await dom.undefine();
  } catch (e) {
    if (!(e instanceof LibvirtError && /nvram/i.test(e.message))) throw e;
    await dom.undefine({ nvram: true });
  }
}
