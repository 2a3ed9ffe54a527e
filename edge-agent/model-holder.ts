// Holds the model that serves requests and swaps it without a gap: requests in flight finish on the
// model they started with, which is disposed only after the last of them returns.
import type { ServedModel } from './model-runtime.ts';

/** Reference-counted slot for the serving model. */
export class ModelHolder {
  private model: ServedModel | null = null;
  private readonly users = new Map<ServedModel, number>();
  private readonly retired = new Set<ServedModel>();

  get current(): ServedModel | null {
    return this.model;
  }

  /** Takes the current model for one request; call the returned release when done. */
  acquire(): { model: ServedModel; release: () => void } | null {
    const model = this.model;
    if (!model) return null;
    this.users.set(model, (this.users.get(model) ?? 0) + 1);
    let released = false;
    return {
      model,
      release: () => {
        if (released) return;
        released = true;
        const n = (this.users.get(model) ?? 1) - 1;
        if (n > 0) this.users.set(model, n);
        else {
          this.users.delete(model);
          if (this.retired.delete(model)) void model.dispose().catch(() => {});
        }
      },
    };
  }

  /** Makes `next` serve new requests; the old model is disposed once idle. */
  swap(next: ServedModel | null): void {
    const old = this.model;
    this.model = next;
    if (!old || old === next) return;
    if ((this.users.get(old) ?? 0) === 0) void old.dispose().catch(() => {});
    else this.retired.add(old);
  }
}
