// Reads claude.ai for the bot, after the helpers of dom.js (`mode`, `sel`, ...). arguments[2]
// holds the attribute names that say whether a message still streams. The modes:
//   probe          the state the wait loop needs (login page, challenge, stop button, last message
//                  and its text so far)
//   composer       the prompt box element, or null
//   composer_text  the text in the prompt box
//   send           the send button element when it is enabled, or null
//   extract        the last answer: html, text without citation tags, links, model, search block,
//                  whether it was read by fallback (no answer element: the message's text), and
//                  how many document cards it shows (an artifact or file: its text is elsewhere)
//   open_search    opens the last answer's closed search blocks; how many search blocks it has
//   sources        the last answer's search results: [{href, title, domain}] (href empty for a
//                  row without a link)

const streamingAttributes = arguments[2] || [];

// The label of a thinking block's toggle, which looks like a search block's.
const THINKING_LABEL = /^\s*(thought|thinking|reasoning)\b/i;

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

// Whether `el` sits in an element of `root` that ANY selector of `lists` finds.
function within(el, root, ...lists) {
  for (const list of lists) {
    for (const s of list || []) {
      try {
        const found = el.closest(s);
        if (found && found !== root && root.contains(found)) return true;
      } catch (_) {
        // An invalid selector must not hide the valid ones.
      }
    }
  }
  return false;
}

// The answer's blocks in reading order: the first selector that finds blocks outside every
// thinking and tool block (and outside buttons: the model selector holds a
// .font-claude-response) wins; blocks nested in another kept block are dropped.
function answerBlocks(message) {
  return (
    each(sel.answer_markdown, (s) => {
      const blocks = Array.from(message.querySelectorAll(s)).filter(
        (el) => !within(el, message, sel.thinking, sel.tool_block) && !el.closest('button'),
      );
      const outer = blocks.filter((el) => !blocks.some((other) => other !== el && other.contains(el)));
      return outer.length ? outer : null;
    }) || []
  );
}

// A copy of `node` without thinking and tool blocks (every selector of both roles) and
// controls: a container block's answer. `extra` lists more roles to drop.
function cleaned(node, ...extra) {
  return copyWithoutAll(node, sel.thinking, sel.tool_block, ...extra);
}

// What the answer is read from: its blocks, or (none matching) the whole message less thinking,
// tool blocks, search results and controls.
function answerNodes(message) {
  const blocks = answerBlocks(message);
  if (blocks.length) return { fallback: false, live: blocks, nodes: blocks.map((b) => cleaned(b)) };
  return { fallback: true, live: [message], nodes: [cleaned(message, sel.sources_link, sel.sources_row)] };
}

function citationLinks(live, message) {
  const links = [];
  for (const root of live) {
    for (const a of every(root, sel.citation_link)) {
      if (within(a, message, sel.thinking, sel.tool_block)) continue;
      links.push({ href: hrefOf(a), text: textOf(a) });
    }
  }
  return links;
}

function searchToggles(message) {
  return every(message, sel.search_toggle).filter((toggle) => !THINKING_LABEL.test(textOf(toggle)));
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

function rowOf(row, href) {
  const title = first(row, sel.sources_title);
  const domain = first(row, sel.sources_domain);
  return { href, title: title ? textOf(title) : textOf(row), domain: domain ? textOf(domain) : '' };
}

switch (mode) {
  case 'probe': {
    const composer = firstShown(document, sel.composer);
    const send = firstShown(document, sel.send_button);
    const { count, message } = lastMessage();
    let last = null;
    if (message) {
      const read = answerNodes(message);
      const html = read.live.map((b) => b.outerHTML).join('\n');
      last = {
        streaming: streamingOf(message),
        text_len: read.nodes.reduce((n, b) => n + (b.textContent || '').trim().length, 0),
        text: read.nodes.map((b) => (b.textContent || '').trim()).filter((t) => t).join('\n\n'),
        signature: signature(html),
        action_bar: !!first(turnOf(message), sel.action_bar),
        error: errorIn(message),
        fallback: read.fallback,
        documents: every(message, sel.document_card).length,
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
    const read = answerNodes(message);
    // The text without the citation tags (a tag can sit mid-word: nothing is put in its place).
    const copies = read.nodes.map((node) => copyWithout(node, sel.citation_chip, sel.citation_link));
    const text = measuredTexts(copies).join('\n\n');
    return {
      html: read.nodes.map((node) => node.outerHTML).join('\n'),
      text,
      links: citationLinks(read.live, message),
      model: modelName(),
      search: searchToggles(message).length > 0,
      fallback: read.fallback,
      documents: every(message, sel.document_card).length,
    };
  }
  case 'open_search': {
    const { message } = lastMessage();
    if (!message) return 0;
    const toggles = searchToggles(message);
    for (const toggle of toggles) {
      if (toggle.getAttribute('aria-expanded') !== 'true') toggle.click();
    }
    return toggles.length;
  }
  case 'sources': {
    const { message } = lastMessage();
    if (!message) return [];
    const links = every(message, sel.sources_link);
    if (links.length) return links.map((a) => rowOf(a, hrefOf(a)));
    return every(message, sel.sources_row).map((row) => {
      const a = row.closest('a[href]') || row.querySelector('a[href]');
      return rowOf(row, a ? hrefOf(a) : '');
    });
  }
  default:
    throw new Error('unknown page mode ' + mode);
}
