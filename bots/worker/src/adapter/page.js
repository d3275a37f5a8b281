// Reads the assistant's page for the bot in one WebDriver round trip. Selectors come from the
// adapter manifest: arguments[1] maps each role to a list of CSS selectors, tried in order.
// arguments[0] names what to do:
//   probe          the state the wait loop needs (login wall, stop button, last answer, ...)
//   composer       the prompt box element, or null
//   composer_text  the text in the prompt box
//   send           the send button element when it is enabled, or null
//   extract        the last answer: html, text without citation pills, links, model
//   sources_button the button that opens the sources list, or null
//   sources        the sources list: [{href, title}]
const mode = arguments[0];
const sel = arguments[1];

function first(root, list) {
  for (const s of list) {
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
  for (const s of list) {
    try {
      const els = root.querySelectorAll(s);
      if (els.length) return Array.from(els);
    } catch (_) {}
  }
  return [];
}

function shown(el) {
  return !!el && el.isConnected && el.getClientRects().length > 0;
}

function firstShown(root, list) {
  for (const s of list) {
    try {
      for (const el of root.querySelectorAll(s)) if (shown(el)) return el;
    } catch (_) {}
  }
  return null;
}

function closest(el, list) {
  for (const s of list) {
    try {
      const found = el.closest(s);
      if (found) return found;
    } catch (_) {}
  }
  return null;
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

function lastMessage() {
  const messages = every(document, sel.assistant_message);
  return { count: messages.length, message: messages.length ? messages[messages.length - 1] : null };
}

function turnOf(message) {
  return closest(message, sel.turn) || message.parentElement || message;
}

function textOf(el) {
  return (el.innerText || el.textContent || '').trim();
}

switch (mode) {
  case 'probe': {
    const composer = firstShown(document, sel.composer);
    const send = firstShown(document, sel.send_button);
    const { count, message } = lastMessage();
    let last = null;
    if (message) {
      const turn = turnOf(message);
      const markdown = first(message, sel.answer_markdown);
      const error = first(message, sel.error) || first(turn, sel.error);
      const html = markdown ? markdown.innerHTML : '';
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
      stop: !!firstShown(document, sel.stop_button),
      send: !!send,
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
    if (!composer) return '';
    return ('value' in composer && composer.tagName === 'TEXTAREA' ? composer.value : composer.innerText) || '';
  }
  case 'send': {
    const send = firstShown(document, sel.send_button);
    if (!send || send.disabled || send.getAttribute('aria-disabled') === 'true') return null;
    return send;
  }
  case 'extract': {
    const { message } = lastMessage();
    if (!message) return null;
    const markdown = first(message, sel.answer_markdown);
    if (!markdown) return null;
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
    for (const attr of sel.model_attribute) {
      const owner = message.hasAttribute(attr) ? message : message.querySelector('[' + attr + ']');
      if (owner && owner.getAttribute(attr)) {
        model = owner.getAttribute(attr);
        break;
      }
    }
    return { html: markdown.innerHTML, text, links, model };
  }
  case 'sources_button': {
    const { message } = lastMessage();
    if (!message) return null;
    const button = first(turnOf(message), sel.sources_button);
    return shown(button) ? button : null;
  }
  case 'sources':
    return every(document, sel.sources_link).map((a) => {
      const title = first(a, sel.sources_title);
      return { href: a.href || a.getAttribute('href') || '', title: title ? textOf(title) : textOf(a) };
    });
  default:
    throw new Error('unknown page mode ' + mode);
}
