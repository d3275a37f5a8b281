// Reads claude.ai for the bot, after the helpers of dom.js (`mode`, `sel`, ...). arguments[2]
// holds the attribute names that say whether a message still streams. The modes:
//   probe          the state the wait loop needs (login page, challenge, stop button, last message)
//   composer       the prompt box element, or null
//   composer_text  the text in the prompt box
//   send           the send button element when it is enabled, or null
//   extract        the last answer: html, text without citation tags, links, model, search block
//   search_toggle  the closed toggle of the last answer's search block, or null
//   sources        the last answer's search results: [{href, title}]

const streamingAttributes = arguments[2] || [];

function lastMessage() {
  const { count, last } = lastOf(document, sel.message);
  return { count, message: last };
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
      send_enabled: enabled(send),
      messages: count,
      last,
      page_error: pageError ? textOf(pageError) : null,
    };
  }
  case 'composer':
    return firstShown(document, sel.composer);
  case 'composer_text':
    return composerText(firstShown(document, sel.composer));
  case 'send': {
    const send = firstShown(document, sel.send_button);
    return enabled(send) ? send : null;
  }
  case 'extract': {
    const { message } = lastMessage();
    if (!message) return null;
    const blocks = answerBlocks(message);
    if (!blocks.length) return null;
    const links = [];
    for (const block of blocks) {
      for (const a of every(block, sel.citation_link)) {
        links.push({ href: hrefOf(a), text: textOf(a) });
      }
    }
    // The text without the citation tags.
    const copies = blocks.map((block) => copyWithout(block, sel.citation_chip, sel.citation_link));
    const text = measuredTexts(copies).join('\n\n');
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
    return listedSources(message);
  }
  default:
    throw new Error('unknown page mode ' + mode);
}
