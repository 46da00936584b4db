// The mock teaching page's integration code: logs the widgets' events (see docs/embedding.md).
const log = document.getElementById('event-log');
const summary = {
  'dermlip-progress': (d) => `${d.file} ${d.loaded}/${d.total} bytes${d.fromCache ? ' (cache)' : ''}`,
  'dermlip-ready': (d) => `backend ${d.backend}, downloaded ${d.bytesDownloaded} bytes`,
  'dermlip-result': (d) => `${d.labelSet}: ${d.predictions.map((p) => `${p.label} ${(p.probability * 100).toFixed(0)}%`).join(', ')}`,
  'dermlip-answer': (d) => `chose ${d.choice}; model top-1 ${d.modelTop1}; correct ${d.correct}`,
  'dermlip-error': (d) => `${d.code}${d.attribute ? ` (${d.attribute})` : ''}: ${d.message}`,
};
const progressLines = new Map(); // one line per widget and file, updated in place
for (const [type, describe] of Object.entries(summary)) {
  document.addEventListener(type, (e) => {
    const text = `${e.target.id || e.target.localName} → ${type}: ${describe(e.detail)}`;
    const key = `${e.target.id}/${e.detail.file}`;
    if (type === 'dermlip-progress' && progressLines.has(key)) {
      progressLines.get(key).textContent = text;
      return;
    }
    const li = document.createElement('li');
    li.textContent = text;
    if (type === 'dermlip-progress') progressLines.set(key, li);
    log.append(li);
  });
}
