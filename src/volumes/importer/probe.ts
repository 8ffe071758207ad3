/**
 * What an image file is, decided without letting qemu-img probe: the format comes from our own
 * look at the header (the magics of every format qemu would recognise), and qemu-img is then
 * asked about that format explicitly (`-f`). Only raw and a self-contained qcow2 pass: a backing
 * file or an external data file could make QEMU read host files (a qcow2 backed by /etc/shadow),
 * and the other formats (vmdk descriptors with extents, vhdx, ...) are not what a DataVolume
 * imports here.
 */
import * as fs from 'node:fs';
import { ImportError } from './types';
import { runTool, type ToolOptions } from './exec';

/** Header magics of the formats qemu-img probes (block/*.c probe functions), checked at their offsets. */
const MAGICS: ReadonlyArray<{ format: string; offset: number; bytes: Buffer }> = [
  { format: 'qcow', offset: 0, bytes: Buffer.from('QFI\xfb', 'latin1') }, // qcow2 is told apart by its version below
  { format: 'qed', offset: 0, bytes: Buffer.from('QED\0', 'latin1') },
  { format: 'vmdk', offset: 0, bytes: Buffer.from('KDMV', 'latin1') },
  { format: 'vmdk', offset: 0, bytes: Buffer.from('COWD', 'latin1') },
  { format: 'vmdk', offset: 0, bytes: Buffer.from('# Disk DescriptorFile', 'latin1') },
  { format: 'vdi', offset: 0x40, bytes: Buffer.from([0x7f, 0x10, 0xda, 0xbe]) },
  { format: 'vpc', offset: 0, bytes: Buffer.from('conectix', 'latin1') },
  { format: 'vhdx', offset: 0, bytes: Buffer.from('vhdxfile', 'latin1') },
  { format: 'luks', offset: 0, bytes: Buffer.from([0x4c, 0x55, 0x4b, 0x53, 0xba, 0xbe]) },
  { format: 'parallels', offset: 0, bytes: Buffer.from('WithoutFreeSpace', 'latin1') },
  { format: 'parallels', offset: 0, bytes: Buffer.from('WithouFreSpacExt', 'latin1') },
  { format: 'bochs', offset: 0, bytes: Buffer.from('Bochs Virtual HD Image', 'latin1') },
  { format: 'cloop', offset: 0, bytes: Buffer.from('#!/bin/sh\n#V2.0 Format\n', 'latin1') },
];

/** The format named by the file's header: 'raw' when no known magic matches. */
export function sniffFormat(file: string): string {
  const fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
  try {
    const head = Buffer.alloc(512);
    const n = fs.readSync(fd, head, 0, head.length, 0);
    const h = head.subarray(0, n);
    for (const m of MAGICS) {
      if (h.length >= m.offset + m.bytes.length && h.subarray(m.offset, m.offset + m.bytes.length).equals(m.bytes)) {
        if (m.format === 'qcow' && h.length >= 8 && h.readUInt32BE(4) >= 2) return 'qcow2';
        return m.format;
      }
    }
    // dmg keeps its 'koly' trailer in the last 512 bytes.
    const size = fs.fstatSync(fd).size;
    if (size >= 512) {
      const tail = Buffer.alloc(4);
      if (fs.readSync(fd, tail, 0, 4, size - 512) === 4 && tail.toString('latin1') === 'koly') return 'dmg';
    }
    return 'raw';
  } finally {
    fs.closeSync(fd);
  }
}

export interface ImageInfo {
  format: 'raw' | 'qcow2';
  virtualSizeBytes: number;
}

interface QemuInfo {
  format?: string;
  'virtual-size'?: number;
  'backing-filename'?: string;
  'full-backing-filename'?: string;
  'format-specific'?: { type?: string; data?: { 'data-file'?: string; encrypt?: unknown } };
  encrypted?: boolean;
}

/** Sniffs, then `qemu-img info -f <format> --output=json`; refuses anything but raw or a self-contained qcow2 (InvalidImage). */
export async function inspectImage(qemuImg: string, file: string, what: string, t: ToolOptions): Promise<ImageInfo> {
  const sniffed = sniffFormat(file);
  if (sniffed !== 'raw' && sniffed !== 'qcow2') throw new ImportError('InvalidImage', `${what} is a ${sniffed} image: only raw or qcow2 is imported`, false);
  let info: QemuInfo;
  try {
    const { stdout } = await runTool(qemuImg, ['info', '-f', sniffed, '--output=json', file], t);
    info = JSON.parse(stdout) as QemuInfo;
  } catch (e) {
    if (e instanceof ImportError) throw e;
    throw new ImportError('InvalidImage', `${what} is not a valid ${sniffed} image: ${firstLine(e)}`, false, { cause: e });
  }
  if (info.format !== sniffed) throw new ImportError('InvalidImage', `${what}: qemu-img reads it as ${info.format ?? 'unknown'}, not ${sniffed}`, false);
  if (info['backing-filename'] !== undefined || info['full-backing-filename'] !== undefined) {
    throw new ImportError('InvalidImage', `${what} is a qcow2 with a backing file: refused (it could read host files)`, false);
  }
  if (info['format-specific']?.data?.['data-file'] !== undefined) throw new ImportError('InvalidImage', `${what} is a qcow2 with an external data file: refused (it could read host files)`, false);
  if (info.encrypted === true || info['format-specific']?.data?.encrypt !== undefined) throw new ImportError('InvalidImage', `${what} is an encrypted qcow2: not supported`, false);
  const v = info['virtual-size'];
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw new ImportError('InvalidImage', `${what}: qemu-img reports no virtual size`, false);
  return { format: sniffed, virtualSizeBytes: v };
}

export function firstLine(e: unknown): string {
  const err = e as { stderr?: unknown; message?: unknown };
  const text = typeof err.stderr === 'string' && err.stderr.trim() !== '' ? err.stderr : String(err.message ?? e);
  return text.trim().split('\n')[0] ?? '';
}
