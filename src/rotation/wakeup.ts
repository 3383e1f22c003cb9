/** A level-triggered wake-up for one waiting loop: fire() before wait() is not lost. */
export class Wakeup {
  private resolve: (() => void) | null = null;
  private pending = false;

  wait(): Promise<void> {
    if (this.pending) {
      this.pending = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      this.resolve = resolve;
    });
  }

  fire(): void {
    const resolve = this.resolve;
    if (resolve) {
      this.resolve = null;
      resolve();
    } else {
      this.pending = true;
    }
  }
}
