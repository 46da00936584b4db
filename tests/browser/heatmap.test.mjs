// The heat-map (issue 16): where the photo agrees with the top match, per patch of the model's
// square, equal to the CLI's (`dermlip classify --json --heat-map`), drawn over the square on the
// site (educator view) and in the widget (`heat-map` attribute), over the square the model saw.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { fixtureBytes, launch, nativeClassify, newPage, openSite, startServer } from './harness.mjs';

const IMAGE = 'images/chelsea_451x300_q95_444.jpg';

let server;
let browser;
before(async () => {
  server = await startServer();
  browser = await launch();
});
after(async () => {
  if (browser) await browser.close();
  if (server) server.close();
});

function checkAgainstCli(heat, native) {
  assert.equal(heat.label, native.label);
  assert.deepEqual([heat.rows, heat.cols], [native.rows, native.cols]);
  assert.equal(heat.cosine.length, heat.rows * heat.cols, 'one value per patch of the grid');
  for (let i = 0; i < heat.cosine.length; i++) {
    assert.ok(Math.abs(heat.cosine[i] - native.cosine[i]) < 1e-4, `patch ${i}: ${heat.cosine[i]} vs ${native.cosine[i]}`);
    assert.ok(Math.abs(heat.share[i] - native.share[i]) < 1e-3, `patch ${i} share`);
  }
  const sum = heat.share.reduce((a, b) => a + b, 0);
  assert.ok(Math.abs(sum - 1) < 1e-5, `the shares sum to 1 (${sum})`);
}

describe('the heat-map', () => {
  test('on the site: asked for in the educator view, equal to the CLI\'s, drawn over the square', async () => {
    const context = await browser.newContext();
    const page = await newPage(context);
    await openSite(page, server.url, 'nosw');
    await page.setInputFiles('#file', { name: 'c.jpg', mimeType: 'image/jpeg', buffer: Buffer.from(fixtureBytes(IMAGE)) });
    await page.waitForFunction(() => document.querySelector('#results ol.predictions') && document.body.dataset.busy === 'false');
    assert.equal(await page.evaluate(() => window.dermlipApp.state.result.heatMap), null, 'not computed unless asked');
    assert.ok(await page.isHidden('#heat-map'));
    await page.check('#heat-map-toggle');
    await page.waitForFunction(() => document.body.dataset.busy === 'false' && window.dermlipApp.state.result?.heatMap);
    const r = await page.evaluate(() => window.dermlipApp.state.result);
    const native = nativeClassify([IMAGE], ['--label-set', 'pad6', '--heat-map'])[0];
    checkAgainstCli(r.heatMap, native.heatMap);
    assert.equal(r.heatMap.label, r.predictions[0].label, 'the map is for the top match');
    const boxes = await page.evaluate(() => {
      const rect = (id) => {
        const b = document.getElementById(id).getBoundingClientRect();
        return [b.x, b.y, b.width, b.height];
      };
      const c = document.getElementById('heat-map');
      return { heat: rect('heat-map'), crop: rect('crop-box'), size: [c.width, c.height] };
    });
    // The crop box has a 2 px border drawn inside its box; the map covers the same square.
    boxes.heat.forEach((v, i) => assert.ok(Math.abs(v - boxes.crop[i]) <= 1, `heat ${boxes.heat} vs crop ${boxes.crop}`));
    assert.deepEqual(boxes.size, [r.heatMap.cols, r.heatMap.rows]);
    assert.match(await page.textContent('#heat-map-note'), /redder a part of the square/);
    await page.uncheck('#heat-map-toggle');
    await page.waitForFunction(() => document.body.dataset.busy === 'false' && !window.dermlipApp.state.result?.heatMap);
    assert.ok(await page.isHidden('#heat-map'));
    await context.close();
  });

  test('in the widget: the heat-map attribute draws it over the photo', async () => {
    const context = await browser.newContext();
    const page = await newPage(context);
    await page.goto(`${server.url}www/embed-example.html?nosw`);
    await page.evaluate((src) => {
      document.body.insertAdjacentHTML('beforeend', `<dermlip-classifier id="h" heat-map loading="eager" reveal="auto" label-set="pad6" src="${src}"></dermlip-classifier>`);
    }, `/tests/fixtures/${IMAGE}`);
    const result = await page.evaluate(() => new Promise((resolve, reject) => {
      const w = document.getElementById('h');
      w.addEventListener('dermlip-result', (e) => resolve(e.detail), { once: true });
      w.addEventListener('dermlip-error', (e) => reject(new Error(e.detail.message)), { once: true });
    }));
    const native = nativeClassify([IMAGE], ['--label-set', 'pad6', '--heat-map'])[0];
    checkAgainstCli(result.heatMap, native.heatMap);
    await page.waitForFunction(() => {
      const c = document.getElementById('h').shadowRoot.querySelector('[part~="heat-map"]');
      return c && !c.hidden && c.width === 7 && c.getBoundingClientRect().width > 10;
    });
    // The square the model saw is drawn over the photo too, where the engine says it is.
    const [photo, box, heat] = await page.evaluate(() => {
      const root = document.getElementById('h').shadowRoot;
      const r = (sel) => {
        const b = root.querySelector(sel).getBoundingClientRect();
        return [b.x, b.y, b.width, b.height];
      };
      return [r('canvas[role="img"]'), r('[part~="crop-box"]'), r('[part~="heat-map"]')];
    });
    const c = result.crop;
    const sx = photo[2] / c.imageWidth;
    const sy = photo[3] / c.imageHeight;
    const want = [photo[0] + c.x * sx, photo[1] + c.y * sy, c.width * sx, c.height * sy];
    box.forEach((v, i) => assert.ok(Math.abs(v - want[i]) <= 1, `crop box ${box} vs ${want}`));
    heat.forEach((v, i) => assert.ok(Math.abs(v - box[i]) <= 1, `heat-map ${heat} over the crop box ${box}`));
    await context.close();
  });
});
