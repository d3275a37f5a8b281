// Reads a perplexity.ai page for the bot in one WebDriver round trip. Selectors come from the
// adapter manifest: arguments[1] maps each role to a list of CSS selectors, tried in order.
// arguments[0] names what to do:
//   probe          the state the wait loops need (challenge, sign-in modal, stop button, last turn)
//   composer       the prompt box element, or null
//   composer_text  the text in the prompt box
//   submit         the submit button when it is enabled, or null
//   extract        the last answer: html, text without chips, chips, markdown html, model, ...
//   sources_tab    the last turn's sources tab ("Links"), or null
//   sources        the open sources list as [{href, title}], or null when no list is open
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

function lastTurn() {
  const turns = every(document, sel.turn);
  return { count: turns.length, turn: turns.length ? turns[turns.length - 1] : null };
}

function composerText(composer) {
  if (!composer) return '';
  return ((composer.tagName === 'TEXTAREA' ? composer.value : composer.innerText) || '').replace(/\u00a0/g, ' ');
}

// A chip's source: the manifest's URL attribute on the chip or inside it, else a link.
function chipUrl(chip) {
  for (const attr of sel.citation_url_attribute || []) {
    if (chip.hasAttribute(attr)) return chip.getAttribute(attr);
    const inner = chip.querySelector('[' + attr + ']');
    if (inner) return inner.getAttribute(attr);
  }
  if (chip.href) return chip.href;
  const link = chip.querySelector('a[href]');
  return link ? link.href : '';
}

function hostOf(url) {
  try {
    return new URL(url).hostname.replace(/^www\./, '');
  } catch (_) {
    return url;
  }
}

// innerText needs layout: measure a node off-screen.
function measuredText(node) {
  const holder = document.createElement('div');
  holder.setAttribute('aria-hidden', 'true');
  holder.style.cssText = 'position:absolute;left:-100000px;top:0;width:760px;';
  holder.appendChild(node);
  document.body.appendChild(holder);
  const text = node.innerText;
  holder.remove();
  return text;
}

switch (mode) {
  case 'probe': {
    const composer = firstShown(document, sel.composer);
    const dialog = firstShown(document, ['[role="dialog"]', '[role="alertdialog"]']);
    const { count, turn } = lastTurn();
    let last = null;
    if (turn) {
      const answer = first(turn, sel.answer);
      const error = first(turn, sel.error);
      const html = answer ? answer.innerHTML : '';
      last = {
        answer: !!answer,
        text_len: answer ? (answer.textContent || '').trim().length : 0,
        signature: signature(html),
        action_bar: !!first(turn, sel.action_bar),
        error: error ? textOf(error) : null,
      };
    }
    return {
      ready: document.readyState === 'complete',
      title: document.title || '',
      text_head: document.body ? (document.body.innerText || '').slice(0, 600) : '',
      challenge: !!first(document, sel.challenge),
      login_wall: !!firstShown(document, sel.login_wall),
      dialog_text: dialog ? textOf(dialog).slice(0, 400) : null,
      composer: !!composer,
      composer_text: composerText(composer),
      stop: !!firstShown(document, sel.stop_button),
      turns: count,
      last,
    };
  }
  case 'composer':
    return firstShown(document, sel.composer);
  case 'composer_text':
    return composerText(firstShown(document, sel.composer));
  case 'submit': {
    const submit = firstShown(document, sel.submit_button);
    if (!submit || submit.disabled || submit.getAttribute('aria-disabled') === 'true') return null;
    return submit;
  }
  case 'extract': {
    const { turn } = lastTurn();
    if (!turn) return null;
    const answer = first(turn, sel.answer);
    if (!answer) return null;
    const chips = every(answer, sel.citation_chip).map((chip) => ({ href: chipUrl(chip) }));
    // The text without chips.
    const plain = answer.cloneNode(true);
    every(plain, sel.citation_chip).forEach((chip) => chip.remove());
    const text = measuredText(plain);
    // For markdown, each chip becomes a pill link named by its domain: "([site](url))".
    const marked = answer.cloneNode(true);
    every(marked, sel.citation_chip).forEach((chip) => {
      const url = chipUrl(chip);
      if (!url) {
        chip.remove();
        return;
      }
      const pill = document.createElement('span');
      pill.setAttribute('data-testid', 'webpage-citation-pill');
      const link = document.createElement('a');
      link.setAttribute('href', url);
      link.textContent = hostOf(url);
      pill.appendChild(link);
      chip.replaceWith(pill);
    });
    const model = first(turn, sel.model_label);
    return {
      html: answer.innerHTML,
      text,
      chips,
      markdown_html: marked.innerHTML,
      model: model ? textOf(model) : null,
      search_steps: !!first(turn, sel.search_steps),
      sources_tab: !!first(turn, sel.sources_tab),
    };
  }
  case 'sources_tab': {
    const { turn } = lastTurn();
    const tab = turn ? first(turn, sel.sources_tab) : null;
    return shown(tab) ? tab : null;
  }
  case 'sources': {
    const { turn } = lastTurn();
    const panel = (turn && firstShown(turn, sel.sources_panel)) || firstShown(document, sel.sources_panel);
    if (!panel) return null;
    return every(panel, sel.sources_link).map((a) => {
      const title = first(a, sel.sources_title);
      return { href: a.href || a.getAttribute('href') || '', title: title ? textOf(title) : textOf(a) };
    });
  }
  default:
    throw new Error('unknown page mode ' + mode);
}
