// Reads a Google search page for the bot, after the helpers of dom.js (`mode`, `sel`, ...), with
// the manifest's `overview_heading_patterns` as arguments[2] and its `stream_url_parts` as
// arguments[3]. The modes:
//   probe           the state the wait loop needs (walls, results, the AI Overview block and its
//                   text so far)
//   composer        the search box element, or null
//   composer_text   the text in the search box
//   show_more       the collapsed overview's "Show more" control, or null
//   sources_expand  the sources list's "Show all" control, or null
//   page_sources    the hrefs of the block's chips and listed sources
//   extract         the overview: html, text without chips, chips, links, sources
//
// Everything of the overview is looked up inside its block (`scope`): People also ask holds AI
// answers under the same markers, and a document-wide lookup would read those.
const headingPatterns = (arguments[2] || []).map((p) => String(p).toLowerCase());
const streamUrlParts = arguments[3] || [];

// The deferred bodies the response tee (tee.js) caught in this document, without their text:
// read with every probe, so the stream's end costs no round trip of its own.
function teedBodies() {
  if (!window.__aapTee) return [];
  return window.__aapTee.state(0).filter((t) => !streamUrlParts.length || streamUrlParts.some((p) => t.url.includes(p)));
}

function matchesAny(el, list) {
  return !!each(list, (s) => el.matches(s));
}

// The element itself or a descendant matching one of the selectors (markers may sit on the
// block itself after a redesign).
function selfOrInside(root, list) {
  return each(list, (s) => (root.matches(s) ? root : root.querySelector(s)));
}

// The block: the outermost element an `overview` selector matches around the first match (the
// classic shell nests #m-x-content in div.YzCcne, and "Show more" sits between the two); else
// the block around a heading that reads "AI Overview" (or a localized label).
function overviewScope() {
  let found = first(document, sel.overview);
  if (found) {
    for (let up = found.parentElement; up; up = up.parentElement) {
      if (matchesAny(up, sel.overview)) found = up;
    }
    return found;
  }
  if (!headingPatterns.length) return null;
  for (const heading of document.querySelectorAll('[role="heading"], h1, h2')) {
    const text = (heading.textContent || '').trim().toLowerCase();
    if (headingPatterns.includes(text)) {
      const block = heading.closest('[data-hveid], [jscontroller]');
      if (block && block !== document.body) return block;
    }
  }
  return null;
}

const SKIP_TAGS = new Set(['STYLE', 'SCRIPT', 'NOSCRIPT', 'TEMPLATE']);
// Parts of a block that are never answer text, hidden or not.
const NOT_ANSWER = () => [].concat(sel.notice || [], sel.error || [], sel.loading || [], sel.show_more || []);

// Length of the text of `root` without style and script text (a block's text can start with an
// inlined <style>: idx:55263451222).
function textLen(root) {
  let total = 0;
  const walk = (node) => {
    for (const child of node.childNodes) {
      if (child.nodeType === Node.TEXT_NODE) total += child.data.trim().length;
      else if (child.nodeType === Node.ELEMENT_NODE && !SKIP_TAGS.has(child.tagName)) walk(child);
    }
  };
  walk(root);
  return total;
}

// Text inside `root` that is in the DOM but not rendered (a collapsed overview keeps its rest
// under display:none): the guard against reading half an answer. Style text, notices, errors and
// controls are not answer text.
function hiddenText(root) {
  const skip = NOT_ANSWER();
  let total = 0;
  const walk = (el) => {
    for (const child of el.children) {
      if (SKIP_TAGS.has(child.tagName) || matchesAny(child, skip)) continue;
      const style = getComputedStyle(child);
      if (style.display === 'none' || style.visibility === 'hidden') {
        total += textLen(child);
      } else {
        walk(child);
      }
    }
  };
  walk(root);
  return total;
}

// The fallback read of a block without an answer element: the block less its heading, notices,
// loading state, controls, sources list and footer.
function fallbackLists() {
  return [
    ['[role="heading"][aria-level="2"]', 'h1', 'h2'],
    sel.notice,
    sel.error,
    sel.loading,
    sel.show_more,
    sel.sources_expand,
    sel.sources_item,
    sel.sources_link,
    sel.action_bar,
  ];
}

function chipLink(chip) {
  return matchesAny(chip, sel.citation_link) ? chip : first(chip, sel.citation_link);
}

// The block's chips and the links of its sources list that are no chip's.
function chipsAndSources(scope, answer) {
  const chips = answer ? every(answer, sel.citation_chip) : [];
  const sources = every(scope, sel.sources_link).filter((a) => !chips.some((chip) => chip.contains(a)));
  return { chips, sources };
}

switch (mode) {
  case 'probe': {
    const scope = overviewScope();
    let block = null;
    if (scope) {
      const answer = first(scope, sel.answer);
      const notice = firstShown(scope, sel.notice);
      const error = firstShown(scope, sel.error);
      const read = answer || copyWithoutAll(scope, ...fallbackLists());
      const textLength = textLen(read);
      const hidden = hiddenText(answer || scope);
      block = {
        loading: !!firstShown(scope, sel.loading),
        complete: !!selfOrInside(scope, sel.complete_marker),
        action_bar: !!firstShown(scope, sel.action_bar),
        answer: !!answer,
        text_len: textLength,
        text: (read.textContent || '').trim(),
        hidden_len: hidden,
        signature: signature(scope.innerHTML),
        notice: notice ? textOf(notice) : null,
        error: error ? textOf(error) : null,
        show_more: !!firstShown(scope, sel.show_more),
      };
    }
    const composer = !!firstShown(document, sel.composer);
    const results = !!first(document, sel.results);
    const challenge = firstShown(document, sel.challenge);
    const path = location.pathname;
    return {
      ready: document.readyState === 'complete',
      path,
      title: document.title || '',
      composer,
      results,
      login_wall: !!firstShown(document, sel.login_wall),
      challenge: challenge ? textOf(challenge) || challenge.id || 'challenge' : null,
      // The text patterns only matter on a page that is none of the known ones.
      body_head: composer || results || scope ? '' : ((document.body && document.body.innerText) || '').slice(0, 1500),
      overview: block,
      teed: teedBodies(),
    };
  }
  case 'composer':
    return firstShown(document, sel.composer);
  case 'composer_text':
    return composerText(firstShown(document, sel.composer));
  case 'show_more': {
    const scope = overviewScope();
    return scope ? firstShown(scope, sel.show_more) : null;
  }
  case 'sources_expand': {
    const scope = overviewScope();
    return scope ? firstShown(scope, sel.sources_expand) : null;
  }
  case 'page_sources': {
    const scope = overviewScope();
    if (!scope) return [];
    const { chips, sources } = chipsAndSources(scope, first(scope, sel.answer));
    return chips
      .map(chipLink)
      .filter((a) => a)
      .concat(sources)
      .map(hrefOf);
  }
  case 'extract': {
    const scope = overviewScope();
    if (!scope) return null;
    let answer = first(scope, sel.answer);
    let byFallback = false;
    if (!answer) {
      // No answer element: the block's own text, less what is never answer text.
      answer = copyWithoutAll(scope, ...fallbackLists());
      byFallback = true;
    }
    const { chips, sources: listed } = chipsAndSources(scope, answer);
    // Citations in reading order: each chip's link, and the name the chip shows (its link's
    // text when it has one: a pill's "+1" is no part of the name).
    const perChip = chips.map((chip) => {
      const link = chipLink(chip);
      if (!link) return null;
      const label =
        textOf(link) || textOf(chip) || (link.getAttribute('aria-label') || '').replace(/\s+-\s+Related results$/i, '');
      return { href: hrefOf(link), text: label };
    });
    const cited = perChip.filter((source) => source);
    // Markdown source: chips become citation pills (`([name](url))` in the converter), every
    // link's href a token the bot swaps for the unwrapped, cleaned URL; headings become h-tags.
    const links = [];
    const md = answer.cloneNode(true);
    const mdChips = every(md, sel.citation_chip);
    mdChips.forEach((chip, index) => {
      const source = perChip[index];
      if (!source) {
        chip.remove();
        return;
      }
      chip.replaceWith(pill('aap-link-' + links.length, source.text));
      links.push(source.href);
    });
    md.querySelectorAll('a[href]').forEach((a) => {
      if ((a.getAttribute('href') || '').startsWith('aap-link-')) return;
      links.push(hrefOf(a));
      a.setAttribute('href', 'aap-link-' + (links.length - 1));
    });
    md.querySelectorAll('[role="heading"][aria-level]').forEach((heading) => {
      const level = Math.min(6, Math.max(1, parseInt(heading.getAttribute('aria-level'), 10) || 3));
      const h = document.createElement('h' + level);
      h.innerHTML = heading.innerHTML;
      heading.replaceWith(h);
    });
    md.querySelectorAll('style, script, button').forEach((el) => el.remove());
    const text = measuredText(copyWithoutAll(answer, sel.citation_chip, sel.action_bar), 640);
    const sources = listed.map((a) => {
      const title = first(a, sel.sources_title);
      return {
        href: hrefOf(a),
        title: title ? textOf(title) : a.getAttribute('aria-label') || textOf(a),
      };
    });
    return {
      page_url: location.href,
      html: answer.innerHTML,
      md_html: md.innerHTML,
      text,
      cited,
      links,
      sources,
      by_fallback: byFallback,
    };
  }
  default:
    throw new Error('unknown page mode ' + mode);
}
