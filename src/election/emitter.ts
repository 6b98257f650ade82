// A tiny typed event emitter: one payload per event name. Listener errors are
// reported on the console and never break the loop that emitted the event —
// a buggy logger must not stop a keepalive loop.

type Listener<P> = (payload: P) => void;

export class Emitter<Events extends Record<string, unknown>> {
  readonly #listeners = new Map<keyof Events, Set<Listener<never>>>();

  /** Adds a listener; returns a function that removes it. */
  on<K extends keyof Events>(event: K, fn: Listener<Events[K]>): () => void {
    let set = this.#listeners.get(event);
    if (!set) this.#listeners.set(event, (set = new Set()));
    set.add(fn as Listener<never>);
    return () => set.delete(fn as Listener<never>);
  }

  protected emit<K extends keyof Events>(event: K, payload: Events[K]): void {
    for (const fn of this.#listeners.get(event) ?? []) {
      try {
        (fn as Listener<Events[K]>)(payload);
      } catch (e) {
        console.error(`listener for ${String(event)} threw`, e);
      }
    }
  }
}
