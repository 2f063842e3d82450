// Runs a reconcile step whenever something changed, one run at a time: a kick during a run asks for one more
// run after it, however many kicks came. Backends and frontends use it to follow their xenstore directories.

export class CoalescedRuns {
  private running = false;
  private again = false;

  /**
   * @param step one reconcile run
   * @param stopped true once the owner is disposed: no run starts and no further run is taken
   * @param onError decides about a failed run; returning true asks for one more run
   */
  constructor(
    private readonly step: () => Promise<void>,
    private readonly stopped: () => boolean,
    private readonly onError: (err: unknown) => boolean,
  ) {}

  kick(): void {
    if (this.stopped()) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = true;
    void (async () => {
      try {
        do {
          this.again = false;
          try {
            await this.step();
          } catch (err) {
            if (this.onError(err)) this.again = true;
          }
        } while (this.again && !this.stopped());
      } finally {
        this.running = false;
      }
    })();
  }
}
