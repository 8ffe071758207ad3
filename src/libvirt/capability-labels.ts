/**
 * Node labels from libvirt's capabilities, named as KubeVirt's node labeller names them so existing
 * VMI nodeSelectors keep working:
 *
 *   cpu-model.node.kubevirt.io/<model>=true                    usable in every given domcapabilities
 *   host-model-cpu.node.kubevirt.io/<model>=true               the host-model CPU name
 *   host-model-required-features.node.kubevirt.io/<feat>=true  host-model features with policy require
 *   machine-type.node.kubevirt.io/<type>=true                  every machine type of the host arch,
 *                                                              aliases (q35, pc) included
 *   node.kubevirt.io/accelerator=kvm|tcg                       how guests would execute
 *   node.kubevirt.io/firmware-bios, firmware-efi=true|false    loader availability
 *
 * The accelerator is a fact KubeVirt does not label, so it lives under node.kubevirt.io like the
 * other non-KubeVirt host facts in src/node/labels.ts (kubevirt.io/ itself is KubeVirt's own).
 * Names pass through labelSafeName and every pair through isValidLabel; anything that cannot be made
 * valid is dropped, because one invalid key makes the API server reject the whole node patch.
 */

import { LabelPrefix, isValidLabel, labelSafeName } from '../node/labels';
import type { DomainCapabilities, HostCapabilities } from './capabilities';

/** Label prefixes for capability facts. */
export const CapabilityLabelPrefix = {
  cpuModel: 'cpu-model.node.kubevirt.io',
  hostModelCpu: 'host-model-cpu.node.kubevirt.io',
  hostModelRequiredFeature: 'host-model-required-features.node.kubevirt.io',
  machineType: 'machine-type.node.kubevirt.io',
} as const;

/** The label carrying the accelerator ('kvm' or 'tcg'). */
export const ACCELERATOR_LABEL = `${LabelPrefix.node}/accelerator`;

/** What the capability labels are derived from. */
export interface CapabilityLabelInput {
  host: HostCapabilities;
  /**
   * Domain capabilities for the virttype guests will use (one per machine type, e.g. q35 and pc).
   * Entries whose accelerator differs from the first entry's are ignored: mixing kvm and qemu
   * answers would label models that only one of them can run.
   */
  domains: DomainCapabilities[];
}

/** Builds the capability labels; an empty input gives an empty object. */
export function buildCapabilityLabels(input: CapabilityLabelInput): Record<string, string> {
  const labels: Record<string, string> = {};
  const add = (prefix: string, token: string, value: string): void => {
    const name = labelSafeName(token);
    const key = `${prefix}/${name}`;
    if (name !== '' && isValidLabel(key, value)) labels[key] = value;
  };

  for (const machine of input.host.machineTypes) add(CapabilityLabelPrefix.machineType, machine.name, 'true');

  const first = input.domains[0];
  if (first === undefined) return labels;
  const domains = input.domains.filter((d) => d.accelerator === first.accelerator);

  if (first.accelerator !== null && isValidLabel(ACCELERATOR_LABEL, first.accelerator)) {
    labels[ACCELERATOR_LABEL] = first.accelerator;
  }

  // A VMI asking for a model may get either machine type, so a model counts only if every
  // machine type can run it.
  const usableEverywhere = first.cpuModels.usable
    .map((m) => m.name)
    .filter((name) => domains.every((d) => d.cpuModels.usable.some((m) => m.name === name)));
  for (const name of usableEverywhere) add(CapabilityLabelPrefix.cpuModel, name, 'true');

  const hostModel = domains.find((d) => d.hostModel.supported && d.hostModel.name !== '')?.hostModel;
  if (hostModel !== undefined) {
    add(CapabilityLabelPrefix.hostModelCpu, hostModel.name, 'true');
    for (const f of hostModel.features) {
      if (f.policy === 'require') add(CapabilityLabelPrefix.hostModelRequiredFeature, f.name, 'true');
    }
  }

  add(LabelPrefix.node, 'firmware-bios', String(domains.some((d) => d.firmware.bios)));
  add(LabelPrefix.node, 'firmware-efi', String(domains.some((d) => d.firmware.efi)));
  return labels;
}
