// The time a site's usage-limit message named on the clock ("until 2:10 PM", "resets Thursday
// 15:59", "resets 1:40pm (Europe/Paris)") as a Unix time in milliseconds, read in the zone the
// message names, else in the page's own: the zone the site wrote it in. The first such time from
// 15 minutes before `now` on (a time just past is the one meant: the caller sees it has passed),
// within 8 days, or a year for a date. null: no such time, or a zone this browser does not know.
// arguments[0]: {hour, minute, weekday (0 = Sunday), month (1-12), day, tomorrow, zone};
// arguments[1]: now, in milliseconds.
const [clock, now] = arguments;
const GRACE_MS = 15 * 60 * 1000;
const DAY_MS = 24 * 3600 * 1000;
let format;
try {
  const zone = clock.zone || Intl.DateTimeFormat().resolvedOptions().timeZone;
  format = new Intl.DateTimeFormat('en-US', {
    timeZone: zone,
    hourCycle: 'h23',
    year: 'numeric',
    month: 'numeric',
    day: 'numeric',
    hour: 'numeric',
    minute: 'numeric',
    second: 'numeric',
  });
} catch (_) {
  return null;
}
// The zone's wall clock at the instant t, written as if it were UTC.
const wall = (t) => {
  const p = {};
  for (const { type, value } of format.formatToParts(new Date(t))) p[type] = Number(value);
  return Date.UTC(p.year, p.month - 1, p.day, p.hour % 24, p.minute, p.second);
};
// The instant at which the zone's wall clock reads w; the second step settles an offset that
// changes between the guess and the answer (daylight saving time).
const instant = (w) => {
  const guess = w - (wall(w) - w);
  return w - (wall(guess) - guess);
};
const here = wall(now);
const today = here - (here % DAY_MS);
const span = clock.month ? 366 : 8;
for (let k = -1; k <= span; k++) {
  const date = new Date(today + k * DAY_MS);
  if (clock.tomorrow && k !== 1) continue;
  if (clock.weekday != null && date.getUTCDay() !== clock.weekday) continue;
  if (clock.month && (date.getUTCMonth() + 1 !== clock.month || date.getUTCDate() !== clock.day)) continue;
  const at = instant(today + k * DAY_MS + (clock.hour * 60 + clock.minute) * 60 * 1000);
  if (at >= now - GRACE_MS) return at;
}
return null;
