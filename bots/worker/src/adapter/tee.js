// Runs at the start of every document (CDP Page.addScriptToEvaluateOnNewDocument), before the
// site's own scripts. It tees the assistant's own response streams: every fetch whose response
// is an event stream (or newline-delimited JSON) is cloned, and the clone is read into a
// bounded log the adapter reads back over WebDriver (`window.__aapTee`). The page reads its own
// copy untouched. The wrapper keeps fetch's name, length and native-looking source text, so a
// site that inspects `fetch.toString()` sees what it expects.
(() => {
  'use strict';
  if (window.__aapTee) return;
  // Per response and in all: a whole answer stream is a few hundred KiB at most.
  const MAX_TEXT = 4 * 1024 * 1024;
  const MAX_ENTRIES = 32;
  const STREAMING = /event-stream|ndjson|jsonl|stream\+json|x-stream/i;
  const entries = [];
  let seq = 0;
  // The site's refusals for a usage limit (HTTP 429) or a prompt too long (HTTP 413), whatever
  // their type: the bot reads back what they say about when the limit lifts (a header,
  // `resetsAt` or `clears_in` in the body) and, by the status alone, what an error the page words
  // in a language no pattern knows means (`window.__aapTee.limits()`, aap_bot::limit_reset).
  const MAX_LIMITS = 8;
  const MAX_LIMIT_TEXT = 64 * 1024;
  const limits = [];

  function recordLimit(response) {
    const header = (name) => (response.headers && response.headers.get(name)) || '';
    const limit = {
      seq: ++seq,
      url: response.url || '',
      status: response.status,
      retry_after: header('retry-after'),
      reset: header('anthropic-ratelimit-unified-reset'),
      text: '',
      at_ms: Date.now(),
    };
    limits.push(limit);
    while (limits.length > MAX_LIMITS) limits.shift();
    response
      .clone()
      .text()
      .then(
        (text) => {
          limit.text = text.slice(0, MAX_LIMIT_TEXT);
        },
        () => {},
      );
  }

  function record(response) {
    if (response.status === 429 || response.status === 413) {
      recordLimit(response);
      return;
    }
    const type = (response.headers && response.headers.get('content-type')) || '';
    if (!STREAMING.test(type) || !response.body) return;
    const entry = {
      seq: ++seq,
      url: response.url || '',
      status: response.status,
      content_type: type,
      text: '',
      done: false,
      truncated: false,
      error: null,
      started_ms: Date.now(),
      ended_ms: null,
    };
    entries.push(entry);
    while (entries.length > MAX_ENTRIES) entries.shift();
    let reader;
    try {
      reader = response.clone().body.getReader();
    } catch (error) {
      entry.error = String(error);
      entry.done = true;
      return;
    }
    const decoder = new TextDecoder();
    const finish = (error) => {
      entry.done = true;
      entry.ended_ms = Date.now();
      if (error) entry.error = String(error);
    };
    const pump = () =>
      reader.read().then(({ done, value }) => {
        if (done) {
          entry.text += decoder.decode();
          finish(null);
          return;
        }
        if (entry.text.length < MAX_TEXT) {
          entry.text += decoder.decode(value, { stream: true });
        } else {
          entry.truncated = true;
        }
        return pump();
      }, finish);
    pump();
  }

  const nativeFetch = window.fetch;
  if (typeof nativeFetch !== 'function') return;
  const fetch = function fetch(input, init) {
    const promise = nativeFetch.apply(this, arguments);
    promise.then(
      (response) => {
        try {
          record(response);
        } catch (_) {
          // The tee must never break the page.
        }
      },
      () => {},
    );
    return promise;
  };
  const nativeText = Function.prototype.toString.call(nativeFetch);
  const toString = Function.prototype.toString;
  const patched = function toString() {
    return this === fetch ? nativeText : toString.apply(this, arguments);
  };
  Object.defineProperty(patched, 'toString', { value: () => 'function toString() { [native code] }' });
  Function.prototype.toString = patched;
  window.fetch = fetch;

  Object.defineProperty(window, '__aapTee', {
    value: {
      // The highest sequence number so far: responses after it belong to the next question.
      mark: () => seq,
      // Responses after `after`, without their text: cheap enough for every probe.
      state: (after) =>
        entries
          .filter((entry) => entry.seq > after)
          .map(({ seq, url, status, content_type, done, truncated, error, text }) => ({
            seq,
            url,
            status,
            content_type,
            done,
            truncated,
            error,
            len: text.length,
          })),
      // Responses after `after`, with their text.
      read: (after) => entries.filter((entry) => entry.seq > after).map((entry) => Object.assign({}, entry)),
      // The usage-limit refusals of the last `within_ms`, oldest first, with how long ago each came.
      limits: (within_ms) =>
        limits
          .filter((limit) => Date.now() - limit.at_ms <= within_ms)
          .map((limit) => Object.assign({ age_ms: Date.now() - limit.at_ms }, limit)),
    },
    enumerable: false,
  });
})();
