/** The cores of this machine, as the core (browser-safe) can know them. */
let cores: number | undefined;

/** Cores of this machine: `navigator.hardwareConcurrency` in browsers; the Node entry point sets it from `os`. */
export function availableCores(): number {
  if (cores !== undefined) return cores;
  const nav = (globalThis as { navigator?: { hardwareConcurrency?: number } }).navigator;
  return nav?.hardwareConcurrency ?? 1;
}

/** @internal */
export function setAvailableCores(n: number): void {
  cores = n;
}
