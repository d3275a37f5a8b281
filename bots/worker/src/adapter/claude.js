// Reads claude.ai for the bot in one WebDriver round trip. Selectors come from the adapter
// manifest: arguments[1] maps each role to a list of CSS selectors, tried in order;
// arguments[2] holds the attribute names that say whether a message still streams.
// arguments[0] names what to do:
//   probe          the state the wait loop needs (login page, challenge, stop button, last message)
//   composer       the prompt box element, or null
//   composer_text  the text in the prompt box
//   send           the send button element when it is enabled, or null
//   extract        the last answer: html, text without citation tags, links, model, search block
//   search_toggle  the closed toggle of the last answer's search block, or null
//   sources        the last answer's search results: [{href, title}]
const mode = arguments[0];
const sel = arguments[1];
const streamingAttributes = arguments[2] || [];

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
  return each(list, (s) => {
    const els = root.querySelectorAll(s);
    return els.length ? Array.from(els) : null;
  }) || [];
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

function lastMessage() {
  const messages = every(document, sel.message);
  return { count: messages.length, message: messages.length ? messages[messages.length - 1] : null };
}

function turnOf(message) {
  return closest(message, sel.turn) || message.parentElement || message;
}

// "true"/"false" from the first streaming attribute found on the message, around it or in it.
function streamingOf(message) {
  for (const name of streamingAttributes) {
    try {
      const owner = message.hasAttribute(name)
        ? message
        : message.closest('[' + name + ']') || message.querySelector('[' + name + ']');
      if (owner) return owner.getAttribute(name);
    } catch (_) {}
  }
  return null;
}

function inThinking(el, message) {
  const thinking = closest(el, sel.thinking);
  return !!thinking && message.contains(thinking);
}

// The answer's markdown blocks in reading order: the first selector that finds blocks outside
// every thinking block wins; blocks nested in another kept block are dropped.
function answerBlocks(message) {
  return each(sel.answer_markdown, (s) => {
    const blocks = Array.from(message.querySelectorAll(s)).filter((el) => !inThinking(el, message));
    const outer = blocks.filter((el) => !blocks.some((other) => other !== el && other.contains(el)));
    return outer.length ? outer : null;
  }) || [];
}

function modelName() {
  const button = first(document, sel.model_selector);
  if (!button) return null;
  const label = (button.getAttribute('aria-label') || '').trim();
  const match = /^model:\s*(.+)$/i.exec(label);
  return match ? match[1].trim() : textOf(button) || null;
}

function errorIn(message) {
  const turn = turnOf(message);
  const error = first(message, sel.error) || first(turn, sel.error);
  return error ? textOf(error) : null;
}

switch (mode) {
  case 'probe': {
    const composer = firstShown(document, sel.composer);
    const send = firstShown(document, sel.send_button);
    const { count, message } = lastMessage();
    let last = null;
    if (message) {
      const blocks = answerBlocks(message);
      const html = blocks.map((b) => b.outerHTML).join('\n');
      last = {
        streaming: streamingOf(message),
        text_len: blocks.reduce((n, b) => n + (b.textContent || '').trim().length, 0),
        signature: signature(html),
        action_bar: !!first(turnOf(message), sel.action_bar),
        error: errorIn(message),
      };
    }
    const pageError = firstShown(document, sel.error);
    const body = document.body ? document.body.innerText || '' : '';
    return {
      ready: document.readyState === 'complete',
      title: document.title || '',
      text: composer ? '' : body.slice(0, 1000),
      challenge: !!first(document, sel.challenge),
      composer: !!composer,
      login_wall: !!firstShown(document, sel.login_wall),
      stop: !!firstShown(document, sel.stop_button),
      send_enabled: !!send && !send.disabled && send.getAttribute('aria-disabled') !== 'true',
      messages: count,
      last,
      page_error: pageError ? textOf(pageError) : null,
    };
  }
  case 'composer':
    return firstShown(document, sel.composer);
  case 'composer_text': {
    const composer = firstShown(document, sel.composer);
    return composer ? composer.innerText || '' : '';
  }
  case 'send': {
    const send = firstShown(document, sel.send_button);
    if (!send || send.disabled || send.getAttribute('aria-disabled') === 'true') return null;
    return send;
  }
  case 'extract': {
    const { message } = lastMessage();
    if (!message) return null;
    const blocks = answerBlocks(message);
    if (!blocks.length) return null;
    const links = [];
    for (const block of blocks) {
      for (const a of every(block, sel.citation_link)) {
        links.push({ href: a.href || a.getAttribute('href') || '', text: textOf(a) });
      }
    }
    // innerText needs layout: measure copies without the citation tags off-screen.
    const holder = document.createElement('div');
    holder.setAttribute('aria-hidden', 'true');
    holder.style.cssText = 'position:absolute;left:-100000px;top:0;width:760px;';
    for (const block of blocks) {
      const copy = block.cloneNode(true);
      every(copy, sel.citation_chip).forEach((chip) => chip.remove());
      every(copy, sel.citation_link).forEach((link) => link.remove());
      holder.appendChild(copy);
    }
    document.body.appendChild(holder);
    const text = Array.from(holder.children).map((copy) => copy.innerText).join('\n\n');
    holder.remove();
    const toggles = every(message, sel.search_toggle);
    return {
      html: blocks.map((b) => b.outerHTML).join('\n'),
      text,
      links,
      model: modelName(),
      search: toggles.length > 0,
    };
  }
  case 'search_toggle': {
    const { message } = lastMessage();
    if (!message) return null;
    const toggle = every(message, sel.search_toggle).find((t) => t.getAttribute('aria-expanded') !== 'true');
    return toggle && shown(toggle) ? toggle : null;
  }
  case 'sources': {
    const { message } = lastMessage();
    if (!message) return [];
    return every(message, sel.sources_link).map((a) => {
      const title = first(a, sel.sources_title);
      return { href: a.href || a.getAttribute('href') || '', title: title ? textOf(title) : textOf(a) };
    });
  }
  default:
    throw new Error('unknown page mode ' + mode);
}
