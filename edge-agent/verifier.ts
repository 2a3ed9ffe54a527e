// Trust checks before install: the manifest's ECDSA P-256 signature against the fleet public key, the
// manifest naming the job's model, and the manifest's file list matching the job's artifacts exactly;
// and the same trust check on an installed version directory when the model pointer must be rebuilt.
import { promises as fs } from 'node:fs';
import { ValidationError } from '../common/errors.ts';
import type { DeployModelDocument } from '../contracts/job-document.ts';
import { MANIFEST_FILE, MANIFEST_SIGNATURE_FILE, parseManifestBytes, parseManifestSignature, type Manifest } from '../contracts/manifest.ts';
import { verifyManifestBytes } from '../contracts/manifest-signing.ts';
import { confinedPath, verifyFileOnDisk } from './downloader.ts';
import type { ModelRef } from './model-store.ts';

/** Verifies manifest bytes + signature text for `doc`; returns the parsed manifest or throws ValidationError. */
export function verifyManifest(doc: Pick<DeployModelDocument, 'modelId' | 'version' | 'artifacts'>, manifestBytes: Uint8Array, signatureText: string, publicKeyPem: string): Manifest {
  const sig = parseManifestSignature(signatureText);
  if (!verifyManifestBytes(manifestBytes, sig, publicKeyPem)) {
    throw new ValidationError(`manifest signature (key ${sig.keyId}) does not verify against the fleet public key`, {
      code: 'VALIDATION_SIGNATURE',
    });
  }
  const manifest = parseManifestBytes(manifestBytes);
  if (manifest.modelId !== doc.modelId || manifest.version !== doc.version) {
    throw new ValidationError(
      `manifest is for ${manifest.modelId}@${manifest.version} but the job names ${doc.modelId}@${doc.version}`,
      { code: 'VALIDATION_MANIFEST_MISMATCH' },
    );
  }
  const byName = new Map(manifest.files.map((f) => [f.name, f]));
  const problems: string[] = [];
  for (const a of doc.artifacts) {
    const f = byName.get(a.name);
    if (!f) problems.push(`${a.name} is not in the manifest`);
    else if (f.sha256 !== a.sha256 || f.size !== a.size) problems.push(`${a.name} differs (manifest ${f.size} B ${f.sha256.slice(0, 12)}…, job ${a.size} B ${a.sha256.slice(0, 12)}…)`);
    byName.delete(a.name);
  }
  for (const name of byName.keys()) problems.push(`${name} is in the manifest but not in the job`);
  if (problems.length > 0) {
    throw new ValidationError(`manifest files do not match the job artifacts: ${problems.join('; ')}`, { code: 'VALIDATION_MANIFEST_MISMATCH' });
  }
  return manifest;
}

/** Reads and verifies the manifest saved in an install directory. */
export async function verifyManifestFiles(doc: DeployModelDocument, manifestPath: string, signaturePath: string, publicKeyPem: string): Promise<Manifest> {
  const [bytes, sig] = await Promise.all([fs.readFile(manifestPath), fs.readFile(signaturePath, 'utf8')]);
  return verifyManifest(doc, bytes, sig, publicKeyPem);
}

/**
 * Checks an installed version directory on its own (no job document): the saved manifest verifies against
 * the fleet key, names `ref`, and every file it lists is on disk with its size and sha256. Used to rebuild
 * the model pointer after storage damage; throws ValidationError naming the first problem.
 */
export async function verifyInstalledVersion(dir: string, ref: ModelRef, publicKeyPem: string): Promise<Manifest> {
  let bytes: Buffer;
  let sigText: string;
  try {
    [bytes, sigText] = await Promise.all([fs.readFile(confinedPath(dir, MANIFEST_FILE)), fs.readFile(confinedPath(dir, MANIFEST_SIGNATURE_FILE), 'utf8')]);
  } catch (err) {
    throw new ValidationError(`${dir} has no readable signed manifest: ${(err as Error).message}`, { code: 'VALIDATION_MANIFEST_MISSING', cause: err });
  }
  const sig = parseManifestSignature(sigText);
  if (!verifyManifestBytes(bytes, sig, publicKeyPem)) {
    throw new ValidationError(`${dir}: manifest signature (key ${sig.keyId}) does not verify against the fleet public key`, { code: 'VALIDATION_SIGNATURE' });
  }
  const manifest = parseManifestBytes(bytes);
  if (manifest.modelId !== ref.modelId || manifest.version !== ref.version) {
    throw new ValidationError(`${dir} holds a manifest for ${manifest.modelId}@${manifest.version}, not ${ref.modelId}@${ref.version}`, {
      code: 'VALIDATION_MANIFEST_MISMATCH',
    });
  }
  for (const f of manifest.files) await verifyFileOnDisk(confinedPath(dir, f.name), f.size, f.sha256);
  return manifest;
}
