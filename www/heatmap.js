// The heat-map (result.heatMap, src/knowledge/heatmap.rs): where the photo agrees most with the
// top match, one cell per patch of the model's square. Shared by the site and the widget.

/** Paints `heat` (rows × cols, `share` per patch) into a small canvas; the page scales it up
 * smoothly over the square the model saw. Red, opacity proportional to the patch's share of the
 * agreement relative to the largest. */
export function paintHeatMap(canvas, heat) {
  canvas.width = heat.cols;
  canvas.height = heat.rows;
  const ctx = canvas.getContext('2d');
  const img = ctx.createImageData(heat.cols, heat.rows);
  const max = Math.max(...heat.share);
  heat.share.forEach((s, i) => {
    img.data.set([230, 40, 20, Math.round(210 * (max > 0 ? s / max : 0))], i * 4);
  });
  ctx.putImageData(img, 0, 0);
}

/** Positions an absolutely placed element over `crop` (in the photo's pixels), in percent of the
 * photo, so it follows the preview's size. */
export function placeOver(element, crop) {
  const pct = (v, of) => `${(100 * v) / of}%`;
  element.style.left = pct(crop.x, crop.imageWidth);
  element.style.top = pct(crop.y, crop.imageHeight);
  element.style.width = pct(crop.width, crop.imageWidth);
  element.style.height = pct(crop.height, crop.imageHeight);
}

/** The largest share, as a whole percent (for the legend). */
export function peakPercent(heat) {
  return Math.round(100 * Math.max(...heat.share));
}
