// Single flight for refreshes: the refreshes of one session run one at a time, in arrival order.
// The first of several tabs racing one expiry mints a new token; the others then name a token
// that is no longer current and get the one it minted. So Capture sees one call per token, and
// a code-mode refresh token (single use) is never spent twice.
//
// In-process only: with several instances behind a load balancer, two of them can still refresh
// one session at once. Replace this with a lock the instances share (e.g. a Redis lock with
// SET NX PX and a token-checked release) if requests of one browser can reach different instances.

export class PerSessionQueue {
  /** @type {Map<string, Promise<void>>} the last queued task of each session */
  #tails = new Map();

  /**
   * Runs `task` once every earlier task of `sessionId` has finished.
   * @template T
   * @param {string} sessionId
   * @param {() => Promise<T>} task
   * @returns {Promise<T>}
   */
  async run(sessionId, task) {
    const previous = this.#tails.get(sessionId) ?? Promise.resolve();
    let done;
    const finished = new Promise((resolve) => (done = resolve));
    const tail = previous.then(() => finished);
    this.#tails.set(sessionId, tail);
    await previous;
    try {
      return await task();
    } finally {
      done();
      if (this.#tails.get(sessionId) === tail) this.#tails.delete(sessionId);
    }
  }
}
