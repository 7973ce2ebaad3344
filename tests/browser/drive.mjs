// Drives notebooks 01 to 05 in JupyterLab inside Debian's chromium, as a person would (Run All on each, in
// order; then 04's and 05's widgets), and writes what it saw as JSON.
//
//   node tests/browser/drive.mjs <lab url, with ?token=...> <notebook dir in the lab> <out dir> <wide png>
//                                <not-an-image file>
//
// tests/browser/test_browser.py starts JupyterLab, runs this, and asserts on <out dir>/report.json; the
// screenshots land in <out dir> too. The script only observes: every check is an assertion in the pytest file, so
// a failure there names what a person would have seen. It exits non-zero only when it cannot drive the page.
import { chromium } from 'playwright-core';
import fs from 'node:fs';
import path from 'node:path';

const [labArg, nbDir, outDir, widePng, notImage] = process.argv.slice(2);
const labUrl = new URL(labArg).origin;
const token = new URL(labArg).searchParams.get('token');
const inLab = (name) => (nbDir && nbDir !== '.' ? `${nbDir}/${name}` : name);
const FIRST = { '01': '01_data_exploration.ipynb', '02': '02_finetune.ipynb', '03': '03_evaluate.ipynb' };
const CHROMIUM = process.env.BLIPNB_CHROMIUM || '/usr/bin/chromium';
const RUN_ALL_MS = 300_000; // 05 loads two models and captions a folder: about a minute on 2 busy cores
const CHANGE_MS = 60_000;   // one widget round trip through the kernel (captioning included)

fs.mkdirSync(outDir, { recursive: true });
const report = { pageErrors: [], notebooks: {} };
const save = () => fs.writeFileSync(path.join(outDir, 'report.json'), JSON.stringify(report, null, 1));

const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
report.browser = `chromium ${browser.version()}`;
try {
  page.on('pageerror', (e) => report.pageErrors.push(String(e)));
  page.setDefaultTimeout(CHANGE_MS);
  if (token) await page.goto(`${labUrl}/lab?token=${token}`); // the token once; the session cookie after that
  for (const [nb, file] of Object.entries(FIRST)) {  // 01 explores, 02 trains, 03 evaluates: Run All, in order
    report.notebooks[nb] = await openAndRunAll(page, inLab(file));
    Object.assign(report.notebooks[nb], await pageChecks(page));
    await page.screenshot({ path: path.join(outDir, `${nb}_ran.png`) });
    save();
  }
  await notebook04(page, report.notebooks['04'] = {});
  save();
  await notebook05(page, report.notebooks['05'] = {});
} catch (e) {
  report.fatal = String(e && e.stack || e);
  await page.screenshot({ path: path.join(outDir, 'fatal.png'), fullPage: true }).catch(() => {});
  throw e;
} finally {
  save();
  await browser.close();
}

// ------------------------------------------------------------------------------------------ the notebooks

async function notebook04(page, seen) {
  Object.assign(seen, await openAndRunAll(page, inLab('04_error_analysis.ipynb')));
  const root = widgetRoot(page, 'rank');
  await root.scrollIntoViewIfNeeded();
  const details = async () => (await root.innerText()).trim();
  const steps = seen.steps = [];
  const step = async (name, shot) => {
    steps.push({ step: name, text: await details(), images: await images(root), messages: await messages(root) });
    if (shot) await root.screenshot({ path: path.join(outDir, `04_${name}.png`) });
  };
  await step('initial', true);

  let before = await details();
  const readout = root.locator('.widget-readout').first();
  await readout.click();
  await page.keyboard.press('Control+A');
  await page.keyboard.type('3');
  await page.keyboard.press('Enter');
  await waitChange(details, before);
  await step('slider', true);

  before = await details();
  await root.getByRole('button', { name: 'highest first' }).click();
  await waitChange(details, before);
  await step('order');

  before = await details();
  const sortBy = root.locator('select').first();
  const keys = await sortBy.locator('option').allTextContents();
  await sortBy.selectOption(keys.find((k) => k.startsWith('Bleu')) || keys[0]);
  await waitChange(details, before, 10_000);
  await step('sort');

  // A word that narrows the rows: the first that changes the match count ("1 of N").
  before = await details();
  let word;
  for (word of ['circle', 'square', 'triangle', 'red', 'blue', 'green', 'yellow', 'purple', 'small', 'large']) {
    await filter(page, root, word);
    if (await waitChange(details, before, 5_000)) break;
  }
  await step('filter');
  steps.at(-1).word = word;

  before = await details();
  await filter(page, root, 'zzzz-no-such-word');
  await waitChange(details, before);
  await step('no_match', true);

  before = await details();
  await filter(page, root, '');
  await waitChange(details, before);
  await step('filter_cleared');

  // Mark the shown image's first reference as wrong: the status line says what was recorded.
  before = await details();
  await root.getByRole('button', { name: 'drop', exact: true }).click();
  await waitChange(details, before);
  await step('dropped', true);
  Object.assign(seen, await pageChecks(page));
}

async function notebook05(page, seen) {
  Object.assign(seen, await openAndRunAll(page, inLab('05_inference_demo.ipynb')));
  const root = widgetRoot(page, 'temperature');
  await root.scrollIntoViewIfNeeded();
  const captionText = async () => JSON.stringify(await captionPanels(root));
  const status = async () => (await root.innerText()).split('\n').find((l) => l.includes('image:') ||
                                                                          l.includes('not an image')) || '';
  const steps = seen.steps = [];
  const step = async (name, shot) => {
    steps.push({ step: name, panels: await captionPanels(root), status: await status(), images: await images(root),
                 picker: await root.locator('select').first().inputValue() });
    if (shot) await root.screenshot({ path: path.join(outDir, `05_${name}.png`) });
  };
  // The panels are HTML widgets the page may draw a moment after the controls: wait for them (bounded).
  await waitChange(async () => (await captionPanels(root)).length, 0);
  await step('initial', true);

  for (const mode of ['greedy', 'beam', 'sampling']) {
    await root.getByRole('button', { name: mode, exact: true }).click();
    const before = await status();
    await root.getByRole('button', { name: 'Caption' }).click();
    await waitChange(status, before);
    await step(mode, mode !== 'beam');
  }

  const picker = root.locator('select').first();
  const options = await picker.locator('option').allTextContents();
  let before = await captionText();
  await picker.selectOption(options[1]);
  await waitChange(captionText, before);
  await step('picked', true);

  before = await captionText();
  await root.getByRole('button', { name: 'Caption' }).click();
  await waitChange(captionText, before);
  await step('picked_captioned');

  before = await status();
  await upload(page, root, widePng);
  await waitChange(status, before);
  await step('uploaded', true);

  before = await status();
  await root.getByRole('button', { name: 'Caption' }).click();
  await waitChange(status, before);
  await step('uploaded_captioned', true);

  before = await status();
  await upload(page, root, notImage);
  await waitChange(status, before);
  await step('bad_upload', true);

  const table = await page.locator('.jp-OutputArea-output table').evaluateAll((ts) =>
    ts.filter((t) => t.innerText.includes('greedy')).map((t) => [...t.querySelectorAll('td')].map((td) => td.innerText)));
  Object.assign(seen, await pageChecks(page), { table: table[0] || null });
}

// ------------------------------------------------------------------------------------------ helpers

async function openAndRunAll(page, file) {
  // A workspace of its own, reset: only this notebook is open, so "run all" cannot reach another one.
  const workspace = path.basename(file, '.ipynb').replace(/[^a-z0-9]/gi, '');
  await page.goto(`${labUrl}/lab/workspaces/${workspace}/tree/${file}?reset`);
  const panel = (f) => Array.from(window.jupyterapp?.shell?.widgets('main') ?? []).find((w) => w.context?.path === f);
  await page.waitForFunction(([f, find]) => {
    const w = eval(find)(f);
    const kernel = w?.context?.isReady && w.sessionContext?.session?.kernel;
    return kernel && kernel.connectionStatus === 'connected' && kernel.status === 'idle';
  }, [file, panel.toString()], { timeout: 120_000 });
  const start = Date.now();
  // Resolves when the last cell is done: true when every cell ran without an error.
  const ok = await page.evaluate(async ([f, find]) => {
    const w = eval(find)(f);
    window.jupyterapp.shell.activateById(w.id);
    return window.jupyterapp.commands.execute('notebook:run-all-cells');
  }, [file, panel.toString()]);
  const unexecuted = await page.evaluate(([f, find]) => eval(find)(f).content.widgets
    .filter((c) => c.model.type === 'code' && c.model.sharedModel.getSource().trim() && !c.model.executionCount)
    .length, [file, panel.toString()]);
  // What the saved notebook holds: a red stderr block and error tracebacks, told apart by output type.
  const outputs = await page.evaluate(([f, find]) => eval(find)(f).content.widgets
    .flatMap((c) => (c.model.type === 'code' ? c.model.outputs.toJSON() : [])), [file, panel.toString()]);
  const text = (o) => [].concat(o.text ?? o.traceback ?? '').join('').slice(0, 2000);
  return { file, ranAll: ok === true, unexecuted, runSeconds: (Date.now() - start) / 1000,
           stderr: outputs.filter((o) => o.output_type === 'stream' && o.name === 'stderr').map(text),
           cellErrors: outputs.filter((o) => o.output_type === 'error').map((o) => `${o.ename}: ${o.evalue}`) };
}

function widgetRoot(page, label) {
  // The outermost widget box of the output holding a control labelled `label` ("rank" in 04, "temperature" in 05).
  return page.locator('.jp-OutputArea-output .widget-vbox')
    .filter({ has: page.locator('.widget-label', { hasText: label }) }).first();
}

async function images(root) {
  // Every drawn <img> of the widget: its natural size (the PNG's, i.e. the source's) and its on-screen box.
  return root.locator('img').evaluateAll((imgs) => imgs.map((img) => {
    const r = img.getBoundingClientRect();
    const style = getComputedStyle(img);
    return { natural: [img.naturalWidth, img.naturalHeight], box: [r.width, r.height], complete: img.complete,
             visible: style.display !== 'none' && style.visibility !== 'hidden' && r.width > 0 && r.height > 0,
             objectFit: style.objectFit, src: img.src.slice(0, 60) };
  }));
}

async function messages(root) {
  return root.locator('.widget-html').evaluateAll((els) => els.map((e) => e.innerText.trim()).filter(Boolean));
}

async function captionPanels(root) {
  // Each model's panel: its heading and the captions listed under it.
  return root.locator('.widget-html').evaluateAll((els) => els
    .filter((e) => e.querySelector('b') && (e.querySelector('ol') || e.innerText.includes('no captions')))
    .map((e) => ({ heading: e.querySelector('b').innerText,
                   captions: [...e.querySelectorAll('li')].map((li) => li.innerText.trim()) })));
}

async function filter(page, root, text) {
  const box = root.locator('input[type="text"]').first();
  await box.fill(text);
  await box.press('Enter'); // continuous_update=False: the kernel hears it on Enter
}

async function upload(page, root, file) {
  // FileUpload keeps its <input type=file> out of the page: clicking the button opens the chooser.
  const [chooser] = await Promise.all([page.waitForEvent('filechooser'),
                                       root.locator('.widget-upload').first().click()]);
  await chooser.setFiles(file);
}

async function pageChecks(page) {
  const text = await page.locator('body').innerText();
  const clipped = await page.locator('.jp-OutputArea-output .widget-label').evaluateAll((els) => els
    .filter((e) => e.offsetParent && e.scrollWidth > e.clientWidth + 1).map((e) => e.innerText));
  return { widgetErrors: (text.match(/Error displaying widget/g) || []).length, clippedLabels: clipped };
}

async function waitChange(read, before, timeout = CHANGE_MS) {
  const end = Date.now() + timeout;
  while (Date.now() < end) {
    if ((await read()) !== before) return true;
    await new Promise((r) => setTimeout(r, 200));
  }
  return false; // the report then shows the same text twice: the test says which step did not change it
}
