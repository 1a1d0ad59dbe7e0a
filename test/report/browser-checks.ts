/**
 * Checks run inside the report page (page.evaluate): WCAG contrast of every text, alt text of
 * every image. Plain functions of the DOM so they can be passed to the browser as they are.
 */

/** Elements whose text contrast is below 4.5:1, as 'tag.class "text" ratio' strings. */
export function lowContrast(): string[] {
  const parse = (c: string): [number, number, number, number] | undefined => {
    const m = /rgba?\(([\d.]+)[, ]+([\d.]+)[, ]+([\d.]+)(?:[,/ ]+([\d.]+))?\)/.exec(c);
    return m ? [Number(m[1]), Number(m[2]), Number(m[3]), m[4] === undefined ? 1 : Number(m[4])] : undefined;
  };
  const lum = (rgb: number[]) => {
    const f = (v: number) => {
      const c = v / 255;
      return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
    };
    return 0.2126 * f(rgb[0]) + 0.7152 * f(rgb[1]) + 0.0722 * f(rgb[2]);
  };
  const background = (el: Element | null): number[] => {
    for (let e = el; e; e = e.parentElement) {
      const c = parse(getComputedStyle(e).backgroundColor);
      if (c && c[3] > 0.5) return c;
    }
    return [255, 255, 255];
  };
  const bad: string[] = [];
  for (const el of Array.from(document.querySelectorAll('body *'))) {
    const text = Array.from(el.childNodes).filter((n) => n.nodeType === 3).map((n) => n.textContent ?? '').join('').trim();
    if (!text) continue;
    if (el.closest('script, style, title, desc')) continue;
    const style = getComputedStyle(el);
    if (style.display === 'none' || style.visibility === 'hidden') continue;
    const fg = parse(el instanceof SVGElement ? style.fill : style.color);
    if (!fg) continue;
    const bg = el instanceof SVGElement ? [255, 255, 255] : background(el);
    const [a, b] = [lum(fg), lum(bg)];
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    if (ratio < 4.5) bad.push(`${el.tagName.toLowerCase()}.${el.getAttribute('class') ?? ''} "${text.slice(0, 30)}" ${ratio.toFixed(2)}`);
  }
  return bad;
}

/** Images without alt text (by src). */
export function missingAlt(): string[] {
  return Array.from(document.querySelectorAll('img')).filter((i) => !(i.getAttribute('alt') ?? '').trim()).map((i) => i.src);
}
