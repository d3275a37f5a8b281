// Reads chatgpt.com for the ChatGPT adapter in one WebDriver round trip. Selectors come from the
// adapter manifest: arguments[1] maps each role to a list of CSS selectors, tried in order.
// arguments[0] names what to do:
//   probe          the state the wait loop needs (login wall, challenge, stop button, thinking,
//                  the answer being waited for, the A/B comparison, ...)
//   composer       the prompt box element, or null
//   composer_text  the text in the prompt box
//   send           the send button element when it is enabled, or null
//   ab_prefer      the "I prefer this response" button of the first response, when enabled
//   extract        the answer: html, text without citation pills, links, model, search shown
//   sources_button the button that opens the sources list, or null
//   sources        the sources list: [{href, title}] in the panel's order
// No element returned for a click is ever the "Answer now" button (role answer_now).
const mode = arguments[0];
const sel = arguments[1];

function first(root, list) {
  for (const s of list || []) {
    try {
      const el = root.querySelector(s);
      if (el) return el;
    } catch (_) {
      // An invalid selector in the manifest must not hide the valid ones after it.
    }
  }
  return null;
}

function every(root, list) {
  for (const s of list || []) {
    try {
      const els = root.querySelectorAll(s);
      if (els.length) return Array.from(els);
    } catch (_) {}
  }
  return [];
}

function matches(el, list) {
  for (const s of list || []) {
    try {
      if (el.matches(s) || el.closest(s)) return true;
    } catch (_) {}
  }
  return false;
}

function shown(el) {
  return !!el && el.isConnected && el.getClientRects().length > 0;
}

function firstShown(root, list) {
  for (const s of list || []) {
    try {
      for (const el of root.querySelectorAll(s)) if (shown(el)) return el;
    } catch (_) {}
  }
  return null;
}

function closest(el, list) {
  for (const s of list || []) {
    try {
      const found = el.closest(s);
      if (found) return found;
    } catch (_) {}
  }
  return null;
}

// What the bot may click: never "Answer now", whatever selector drift led to it. Brought to the
// middle of the viewport first, where no sticky header or composer covers it.
function clickable(el) {
  if (!el || matches(el, sel.answer_now)) return null;
  el.scrollIntoView({ block: 'center', inline: 'nearest' });
  return el;
}

function enabled(el) {
  return !!el && !el.disabled && el.getAttribute('aria-disabled') !== 'true';
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

function turnOf(message) {
  return closest(message, sel.turn) || message.parentElement || message;
}

// The answer being waited for: the last assistant message, or, while the last turn shows the
// A/B comparison, the first candidate's message (never the second, never both).
function answer() {
  const messages = every(document, sel.assistant_message);
  const count = messages.length;
  if (!count) return { count, message: null, comparison: null, prefer: null };
  const last = messages[count - 1];
  const comparison = closest(last, sel.ab_comparison) || first(turnOf(last), sel.ab_comparison);
  if (!comparison) return { count, message: last, comparison: null, prefer: null };
  const candidates = every(comparison, sel.ab_response);
  const chosen = candidates.length ? candidates[0] : comparison;
  const message = first(chosen, sel.assistant_message) || last;
  return { count, message, comparison, prefer: first(chosen, sel.ab_prefer) };
}

function textOf(el) {
  return (el.innerText || el.textContent || '').trim();
}

switch (mode) {
  case 'probe': {
    const composer = firstShown(document, sel.composer);
    const send = firstShown(document, sel.send_button);
    const { count, message, comparison, prefer } = answer();
    let last = null;
    let thinking = false;
    if (message) {
      const turn = turnOf(message);
      const markdown = first(message, sel.answer_markdown);
      const error = first(message, sel.error) || first(turn, sel.error);
      const html = markdown ? markdown.innerHTML : '';
      thinking = !!firstShown(turn, sel.thinking);
      last = {
        text_len: markdown ? (markdown.textContent || '').trim().length : 0,
        signature: signature(html),
        action_bar: !!first(turn, sel.action_bar),
        error: error ? textOf(error) : null,
      };
    }
    const pageError = firstShown(document, sel.error);
    return {
      composer: !!composer,
      login_wall: !!firstShown(document, sel.login_wall),
      challenge: !!first(document, sel.challenge),
      title: document.title || '',
      ready: document.readyState === 'complete',
      stop: !!firstShown(document, sel.stop_button),
      thinking,
      send: !!send,
      send_enabled: enabled(send),
      messages: count,
      last,
      page_error: pageError ? textOf(pageError) : null,
      ab: comparison ? { prefer_ready: shown(prefer) && enabled(prefer) } : null,
    };
  }
  case 'composer':
    return clickable(firstShown(document, sel.composer));
  case 'composer_text': {
    const composer = firstShown(document, sel.composer);
    if (!composer) return '';
    return ('value' in composer && composer.tagName === 'TEXTAREA' ? composer.value : composer.innerText) || '';
  }
  case 'send': {
    const send = firstShown(document, sel.send_button);
    return enabled(send) ? clickable(send) : null;
  }
  case 'ab_prefer': {
    const { prefer } = answer();
    return shown(prefer) && enabled(prefer) ? clickable(prefer) : null;
  }
  case 'extract': {
    const { message, comparison } = answer();
    if (!message) return null;
    const markdown = first(message, sel.answer_markdown);
    if (!markdown) return null;
    const turn = turnOf(message);
    const links = every(markdown, sel.citation_link).map((a) => ({
      href: a.href || a.getAttribute('href') || '',
      text: textOf(a),
    }));
    // innerText needs layout: measure a copy without the pills off-screen.
    const copy = markdown.cloneNode(true);
    every(copy, sel.citation_pill).forEach((pill) => pill.remove());
    const holder = document.createElement('div');
    holder.setAttribute('aria-hidden', 'true');
    holder.style.cssText = 'position:absolute;left:-100000px;top:0;width:760px;';
    holder.appendChild(copy);
    document.body.appendChild(holder);
    const text = copy.innerText;
    holder.remove();
    let model = null;
    for (const attr of sel.model_attribute || []) {
      const owner = message.hasAttribute(attr) ? message : message.querySelector('[' + attr + ']');
      if (owner && owner.getAttribute(attr)) {
        model = owner.getAttribute(attr);
        break;
      }
    }
    const search = first(turn, sel.search_indicator);
    return {
      html: markdown.innerHTML,
      text,
      links,
      model,
      search: search ? textOf(search) : null,
      comparison: !!comparison,
    };
  }
  case 'sources_button': {
    const { message, comparison } = answer();
    // A comparison has no sources of its own until one response is chosen.
    if (!message || comparison) return null;
    const button = first(turnOf(message), sel.sources_button);
    return shown(button) ? clickable(button) : null;
  }
  case 'sources':
    return every(document, sel.sources_link).map((a) => {
      const title = first(a, sel.sources_title);
      return { href: a.href || a.getAttribute('href') || '', title: title ? textOf(title) : textOf(a) };
    });
  default:
    throw new Error('unknown page mode ' + mode);
}
