// DOM helpers every page script starts with: the adapters prepend this file to their own script
// at compile time. The bot runs a script in one WebDriver round trip with the mode (what to do)
// as arguments[0] and the manifest's selectors as arguments[1], each role mapped to a list of CSS
// selectors tried in order; a script may read further arguments of its own after those.
const mode = arguments[0];
const sel = arguments[1];

// What `fn` finds for the first selector of `list` that finds anything.
function each(list, fn) {
  for (const s of list || []) {
    try {
      const found = fn(s);
      if (found) return found;
    } catch (_) {
      // An invalid selector in the manifest must not hide the valid ones after it.
    }
  }
  return null;
}

function first(root, list) {
  return each(list, (s) => root.querySelector(s));
}

function every(root, list) {
  return (
    each(list, (s) => {
      const els = root.querySelectorAll(s);
      return els.length ? Array.from(els) : null;
    }) || []
  );
}

function shown(el) {
  return !!el && el.isConnected && el.getClientRects().length > 0;
}

function firstShown(root, list) {
  return each(list, (s) => Array.from(root.querySelectorAll(s)).find(shown));
}

function closest(el, list) {
  return each(list, (s) => el.closest(s));
}

function enabled(el) {
  return !!el && !el.disabled && el.getAttribute('aria-disabled') !== 'true';
}

// How many elements `list` finds in `root`, and the last of them.
function lastOf(root, list) {
  const els = every(root, list);
  return { count: els.length, last: els.length ? els[els.length - 1] : null };
}

// The conversation turn around a message: the manifest's turn, else the message's parent.
function turnOf(message) {
  return closest(message, sel.turn) || message.parentElement || message;
}

// FNV-1a over the rendered HTML: any change in the answer changes it.
function signature(text) {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return text.length + ':' + hash.toString(16);
}

function textOf(el) {
  return (el.innerText || el.textContent || '').trim();
}

function hrefOf(a) {
  return a.href || a.getAttribute('href') || '';
}

// The text in a prompt box: a form field's value, an editable element's rendered text.
function composerText(composer) {
  if (!composer) return '';
  const text = ('value' in composer && typeof composer.value === 'string' ? composer.value : composer.innerText) || '';
  return text.replace(/\u00a0/g, ' ');
}

// A deep copy of `node` without the elements any of `lists` finds in it.
function copyWithout(node, ...lists) {
  const copy = node.cloneNode(true);
  for (const list of lists) every(copy, list).forEach((el) => el.remove());
  return copy;
}

// innerText needs layout: lays detached `nodes` out off-screen, hidden from assistive
// technology, and reads each one's text.
function measuredTexts(nodes, width = 760) {
  const holder = document.createElement('div');
  holder.setAttribute('aria-hidden', 'true');
  holder.style.cssText = 'position:absolute;left:-100000px;top:0;width:' + width + 'px;';
  nodes.forEach((node) => holder.appendChild(node));
  document.body.appendChild(holder);
  const texts = nodes.map((node) => node.innerText);
  holder.remove();
  return texts;
}

function measuredText(node, width = 760) {
  return measuredTexts([node], width)[0];
}

// A citation pill as the markdown converter knows it: it becomes `([text](href))`.
function pill(href, text) {
  const span = document.createElement('span');
  span.setAttribute('data-testid', 'webpage-citation-pill');
  const a = document.createElement('a');
  a.setAttribute('href', href);
  a.textContent = text;
  span.appendChild(a);
  return span;
}

// The sources listed in `root`: [{href, title}] in the list's order, a link's title element
// (role sources_title) else its text.
function listedSources(root) {
  return every(root, sel.sources_link).map((a) => {
    const title = first(a, sel.sources_title);
    return { href: hrefOf(a), title: title ? textOf(title) : textOf(a) };
  });
}

// Controls and chrome inside a message that are never answer text.
const NOT_TEXT = [
  'button',
  '[role="button"]',
  '[role="toolbar"]',
  'svg',
  'nav',
  'form',
  'textarea',
  'input',
  'select',
  'style',
  'script',
  'noscript',
  'template',
  '[aria-hidden="true"]',
  '[hidden]',
];

// A deep copy of `node` without controls, nor anything ANY selector of `lists` finds (not only
// the first selector that matches: a fallback read must drop every thinking block form).
function copyWithoutAll(node, ...lists) {
  const copy = node.cloneNode(true);
  const selectors = NOT_TEXT.concat(...lists.map((list) => list || []));
  for (const s of selectors) {
    try {
      copy.querySelectorAll(s).forEach((el) => el.remove());
    } catch (_) {
      // An invalid selector must not keep the others from being removed.
    }
  }
  return copy;
}

// The text of a whole assistant message, less thinking blocks (and whatever else `lists` name)
// and controls: how an answer is read when no answer selector matches. Returns the copy read
// (for markdown and HTML) and its text.
function fallbackRead(message, ...lists) {
  const copy = copyWithoutAll(message, ...lists);
  return { node: copy, text: measuredText(copy) };
}
