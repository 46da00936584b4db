#!/usr/bin/env python3
"""Reference outputs of DermLIP-PanDerm's graph (the Derm1M fork's CustomTextCLIP: PanDerm ViT image
tower + Hugging Face BERT text tower) and of its WordPiece tokenizer, for the Rust dermlip port.

Writes the small committed fixtures:
  tests/fixtures/models/tiny-panderm/   a random-weight model in hub file layout: open_clip_config.json,
                                        open_clip_model.safetensors, the BERT's config.json, and the
                                        tokenizer files written by BertTokenizerFast.save_pretrained
  tests/fixtures/panderm/reference.json + pixels.safetensors   image/text embeddings and pre-head features
  tests/fixtures/panderm/wordpiece.json   token ids of a tokenizer corpus (open_clip HFTokenizer; also transformers' pure-Python BertTokenizerLegacy)

Stock open_clip cannot build this model (the fork swaps the vision tower by model name), so the graph is
built here from:
- the CAE `VisionTransformer`, transcribed below from SiyuanYan1/Derm1M @92d8fa9
  src/CAE/models/modeling_finetune.py (only the code paths `call_PanDerm_base_visual` uses);
- `transformers.BertModel(add_pooling_layer=False)` inside a transcription of the fork's
  src/open_clip/hf_model.py `HFTextEncoder` (mean pooler, MLP projection).
Tokenisation is open_clip's own `HFTokenizer` (open_clip_torch 3.3.0) over the saved tokenizer directory.
Everything runs in float32 on the CPU. See tests/reference/README.md.
"""
import datetime
import json
import math
from functools import partial
from pathlib import Path

import numpy as np
import safetensors.torch
import torch
import torch.nn as nn
import torch.nn.functional as F
import transformers
from PIL import Image
from transformers import BertConfig, BertModel
from transformers.models.bert import BasicTokenizer, BertTokenizer, BertTokenizerLegacy
from transformers.models.bert.tokenization_bert import load_vocab

import open_clip
from open_clip.tokenizer import HFTokenizer
from open_clip.transform import PreprocessCfg, image_transform_v2

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"
MODEL_DIR = FIXTURES / "models" / "tiny-panderm"
REF_DIR = FIXTURES / "panderm"
SEED = 7
CONTEXT = 256
MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)

# The PanDerm-base-w-PubMed-256 graph, shrunk. The fork hard-codes PanDerm-base's sizes; dermlip reads
# them from vision_cfg (the real config's values are PanDerm-base's), which is what lets this be small.
MODEL_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 16, "patch_size": 8,
                   "pretrain_path": None},
    "text_cfg": {"context_length": CONTEXT, "hf_model_name": "dermlip-test/tiny-pubmedbert",
                 "hf_tokenizer_name": "dermlip-test/tiny-pubmedbert", "hf_pooler_type": "mean_pooler",
                 "hf_proj_type": "mlp"},
}
BERT = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
            max_position_embeddings=300, type_vocab_size=2, layer_norm_eps=1e-12, hidden_act="gelu",
            pad_token_id=0)

LONG_CAPTION = (
    "Dermoscopic image of a pigmented skin lesion on the upper back of a 54-year-old man showing an atypical "
    "pigment network, irregular dots and globules, a blue-white veil, regression structures and asymmetry in "
    "two axes, with a diameter of about eight millimetres that has grown over the last six months according "
    "to the patient, who also reports occasional itching and bleeding after minor trauma; the clinical "
    "differential diagnosis includes melanoma, dysplastic nevus and pigmented basal cell carcinoma."
)
# Casing, accents, punctuation, CJK, emoji, control and zero-width characters, HTML entities, mojibake,
# special-token strings, an over-long word, empty-ish strings, and lengths around the 256-token limit.
CORPUS = [
    "melanoma",
    "This is a skin image of basal cell carcinoma.",
    "A skin image of actinic keratosis.",
    "An image of seborrheic keratosis, a skin condition.",
    "nevus, a skin disorder, is shown in this image.",
    "The skin lesion depicted is dermatofibroma.",
    "",
    " ",
    " \t\n ",
    LONG_CAPTION,
    LONG_CAPTION + " " + LONG_CAPTION,
    "skin " * 254,  # [CLS] + 254 + [SEP] = 256: not truncated
    "skin " * 255,  # one too many: truncated
    "  Multiple   ERYTHEMATOUS\tpapules\non the  TRUNK  ",
    "Basal cell carcinoma &amp; actinic keratosis &amp;amp; &lt;3",
    "cafÃ© au lait spots",
    "Café-au-lait macules — naïve patient, “quoted”, 1½ cm",
    "Hautausschlag mit Bläschen und Rötung; Straße, ÉCZÉMA",
    "红斑 on the cheek, 皮肤病",
    "itchy rash 😀🔥 on the arm",
    "psoriasis (plaque-type), 2cm; itchy!!! a 5 mm lesion at 12 o'clock",
    "patient's lesion: 1.5mm x 2.25mm... (approx.) [left] {arm} <3 #1 @home 50% $10 ~ok^ `code`",
    "[CLS] melanoma [SEP] [MASK] [PAD] [UNK] [cls]",
    "e\u0301czema with combining accent, zero\u200bwidth, ctrl\x07char, nul\x00byte, soft\u00adhyphen",
    "ＦＵＬＬＷＩＤＴＨ ｔｅｘｔ and ｲﾝﾃﾞｯｸｽ",
    "Ωmega-3 and α-hydroxy acids; İstanbul; ǅ",
    "pneumonoultramicroscopicsilicovolcanoconiosis" * 3,  # longer than max_input_chars_per_word (100)
    "hyperpigmentation hypopigmentation depigmented pigmenting",
    "squamous cell carcinoma in situ (Bowen's disease)",
    "vitiligo, acne, SJS/TEN, nail psoriasis",
    "Melanoma MELANOMA melanoma MeLaNoMa",
    "dysplastic-nevus/atypical_mole",
    "tinea corporis, tinea pedis; onychomycosis?",
    "\u3000ideographic space\u00a0nbsp\u2028line separator",
    "100,000 cells/μL at 37°C ± 0.5",
]
# Texts whose embeddings are compared (ids come from the tokenizer, so this also covers padding masks).
EMBED_TEXTS = [0, 1, 2, 3, 6, 9, 11, 12, 16, 18, 22, 26]
# Whole words kept in the vocabulary; every other corpus word is spelled with ## pieces (or [UNK]).
SUBWORDS = ["##s", "##es", "##ed", "##ing", "##ous", "##al", "##oma", "##osis", "##itis", "##ic", "##ation",
            "##ment", "##ity", "##ly", "##er", "##ar", "##ia", "##ma", "##mal", "##derm", "##pig", "pig",
            "derm", "hyper", "hypo", "de", "cell", "skin", "lesion", "##lesion"]
CLI_IMAGE = "images/astronaut_exact_224.png"


def log(*a):
    print(*a, flush=True)


# --- CAE ViT, transcribed from src/CAE/models/modeling_finetune.py (no rel-pos bias, mean pooling) ------
class Mlp(nn.Module):
    def __init__(self, in_features, hidden_features):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_features, in_features)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Attention(nn.Module):
    def __init__(self, dim, num_heads):
        super().__init__()
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.scale = head_dim ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim))
        self.v_bias = nn.Parameter(torch.zeros(dim))
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, N, C = x.shape
        qkv_bias = torch.cat((self.q_bias, torch.zeros_like(self.v_bias, requires_grad=False), self.v_bias))
        qkv = F.linear(input=x, weight=self.qkv.weight, bias=qkv_bias)
        qkv = qkv.reshape(B, N, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        q = q * self.scale
        attn = (q @ k.transpose(-2, -1)).softmax(dim=-1)
        x = (attn @ v).transpose(1, 2).reshape(B, N, -1)
        return self.proj(x)


class Block(nn.Module):
    def __init__(self, dim, num_heads, mlp_ratio, init_values, norm_layer):
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.attn = Attention(dim, num_heads)
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.gamma_1 = nn.Parameter(init_values * torch.ones((dim)), requires_grad=True)
        self.gamma_2 = nn.Parameter(init_values * torch.ones((dim)), requires_grad=True)

    def forward(self, x):
        x = x + self.gamma_1 * self.attn(self.norm1(x))
        x = x + self.gamma_2 * self.mlp(self.norm2(x))
        return x


class PatchEmbed(nn.Module):
    def __init__(self, img_size, patch_size, embed_dim):
        super().__init__()
        self.patch_shape = (img_size // patch_size, img_size // patch_size)
        self.proj = nn.Conv2d(3, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class VisionTransformer(nn.Module):
    def __init__(self, img_size, patch_size, num_classes, embed_dim, depth, num_heads, mlp_ratio, init_values,
                 norm_layer):
        super().__init__()
        self.patch_embed = PatchEmbed(img_size, patch_size, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = self.build_2d_sincos_position_embedding(embed_dim)
        self.blocks = nn.ModuleList([Block(embed_dim, num_heads, mlp_ratio, init_values, norm_layer)
                                     for _ in range(depth)])
        self.norm = norm_layer(embed_dim)
        self.head = nn.Linear(embed_dim, num_classes)

    def build_2d_sincos_position_embedding(self, embed_dim=768, temperature=10000.):
        h, w = self.patch_embed.patch_shape
        grid_w = torch.arange(w, dtype=torch.float32)
        grid_h = torch.arange(h, dtype=torch.float32)
        grid_w, grid_h = torch.meshgrid(grid_w, grid_h, indexing="ij")  # the fork's default indexing
        pos_dim = embed_dim // 4
        omega = torch.arange(pos_dim, dtype=torch.float32) / pos_dim
        omega = 1. / (temperature ** omega)
        out_w = torch.einsum('m,d->md', [grid_w.flatten(), omega])
        out_h = torch.einsum('m,d->md', [grid_h.flatten(), omega])
        pos_emb = torch.cat([torch.sin(out_w), torch.cos(out_w), torch.sin(out_h), torch.cos(out_h)], dim=1)[None]
        pe_token = torch.zeros([1, 1, embed_dim], dtype=torch.float32)
        pos_embed = nn.Parameter(torch.cat([pe_token, pos_emb], dim=1))
        pos_embed.requires_grad = False
        return pos_embed

    def forward_features(self, x):
        x = self.patch_embed(x)
        batch_size = x.shape[0]
        x = torch.cat((self.cls_token.expand(batch_size, -1, -1), x), dim=1)
        x = x + self.pos_embed.expand(batch_size, -1, -1).type_as(x).to(x.device).clone().detach()
        for blk in self.blocks:
            x = blk(x)
        x = self.norm(x)
        return self.norm(x[:, 1:, :].mean(1))

    def forward(self, x):
        return self.head(self.forward_features(x))


# --- the fork's HFTextEncoder (mean_pooler, proj_type 'mlp'), around transformers' BertModel -----------
class HFTextEncoder(nn.Module):
    def __init__(self, config, output_dim):
        super().__init__()
        self.config = config
        # The hub model was built by `AutoModel.from_pretrained(name, add_pooling_layer=False)`.
        self.transformer = BertModel(config, add_pooling_layer=False)
        d_model = config.hidden_size
        hidden_size = (d_model + output_dim) // 2
        self.proj = nn.Sequential(nn.Linear(d_model, hidden_size, bias=False), nn.GELU(),
                                  nn.Linear(hidden_size, output_dim, bias=False))

    def forward(self, x):
        attn_mask = (x != self.config.pad_token_id).long()
        out = self.transformer(input_ids=x, attention_mask=attn_mask)
        masked_output = out.last_hidden_state * attn_mask.unsqueeze(-1)
        pooled_out = masked_output.sum(dim=1) / attn_mask.sum(-1, keepdim=True)
        return self.proj(pooled_out)


class CustomTextCLIP(nn.Module):
    def __init__(self, cfg, bert_config):
        super().__init__()
        v = cfg["vision_cfg"]
        width = v["width"]
        self.visual = VisionTransformer(
            img_size=v["image_size"], patch_size=v["patch_size"], num_classes=cfg["embed_dim"], embed_dim=width,
            depth=v["layers"], num_heads=width // v["head_width"], mlp_ratio=4.0, init_values=0.1,
            norm_layer=partial(nn.LayerNorm, eps=1e-6))
        self.text = HFTextEncoder(bert_config, cfg["embed_dim"])
        self.logit_scale = nn.Parameter(torch.ones([]) * np.log(1 / 0.07))

    def encode_image(self, image):
        return self.visual(image)

    def encode_text(self, text):
        return self.text(text)


# --- vocabulary and tokenizer -------------------------------------------------------------------------
def build_vocab(slow_basic):
    """[PAD] [UNK] [CLS] [SEP] [MASK], single characters (plain and ##), some ## pieces, and about two
    thirds of the corpus words whole (sorted, every third one left out so it has to be split)."""
    words, chars = set(), set()
    for text in CORPUS:
        for w in slow_basic.tokenize(text):
            words.add(w)
            chars.update(w)
    chars = sorted(c for c in chars if c not in "皮")  # one CJK character stays [UNK]
    kept = [w for i, w in enumerate(sorted(words)) if i % 3 != 2 and len(w) <= 100]
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    for t in chars + ["##" + c for c in chars] + SUBWORDS + kept:
        if t not in vocab:
            vocab.append(t)
    return vocab


def write_tokenizer(vocab):
    MODEL_DIR.mkdir(parents=True, exist_ok=True)
    vocab_path = MODEL_DIR / "vocab.txt"
    vocab_path.write_text("".join(t + "\n" for t in vocab), encoding="utf-8")
    # transformers 5: BertTokenizer is the fast (tokenizers) one, BertTokenizerLegacy the pure-Python one.
    fast = BertTokenizer(vocab=load_vocab(str(vocab_path)), do_lower_case=True)
    fast.save_pretrained(str(MODEL_DIR))
    slow = BertTokenizerLegacy(vocab_file=str(vocab_path), do_lower_case=True)
    return fast, slow


def tokenizer_fixture(open_clip_tok, fast, slow):
    clean = open_clip_tok.clean_fn
    entries, differ = [], 0
    for text in CORPUS:
        ids = [int(v) for v in open_clip_tok([text])[0].tolist()]
        direct = fast(clean(text), max_length=CONTEXT, padding="max_length", truncation=True).input_ids
        assert direct == ids, text
        slow_ids = slow(clean(text), max_length=CONTEXT, padding="max_length", truncation=True).input_ids
        same = slow_ids == ids
        differ += not same
        entries.append({"text": text, "ids": ids, "slow_same": same})
    log(f"  tokenizer corpus: {len(CORPUS)} texts, slow BertTokenizer differs from the fast one on {differ}")
    return entries


# --- model ---------------------------------------------------------------------------------------------
@torch.no_grad()
def perturb_(model, seed):
    """Seeded noise in every trainable parameter (the fixed sin-cos `pos_embed` stays as built), with
    magnitudes that keep the outputs of order one so the 1e-4 bound is meaningful."""
    g = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        if name == "visual.pos_embed":
            continue
        noise = torch.randn(p.shape, generator=g, dtype=torch.float32)
        leaf = name.rsplit(".", 1)[-1]
        if name == "logit_scale":
            p.copy_(math.log(1 / 0.07) + 0.1 * noise)
        elif leaf in ("gamma_1", "gamma_2"):
            p.copy_(0.1 * (1.0 + 0.5 * noise))
        elif leaf == "cls_token":
            p.copy_(noise * p.shape[-1] ** -0.5)
        elif p.ndim == 1 and leaf.endswith("bias"):  # incl. q_bias / v_bias
            p.copy_(0.05 * noise)
        elif p.ndim == 1 and leaf == "weight":  # LayerNorm gains
            p.copy_(1.0 + 0.1 * noise)
        elif p.ndim >= 2:
            p.copy_(noise * p[0].numel() ** -0.5)
        else:
            raise RuntimeError(f"no perturbation rule for parameter {name} {tuple(p.shape)}")
    for name, p in model.named_parameters():
        if p.numel() > 1 and float(p.std()) == 0.0 and name != "visual.pos_embed":
            raise RuntimeError(f"parameter {name} is still constant")


def floats(t):
    return [float(v) for v in t.reshape(-1).tolist()]


def main():
    torch.set_grad_enabled(False)
    log(f"torch {torch.__version__}, transformers {transformers.__version__}, open_clip {open_clip.__version__}, "
        f"{datetime.date.today()}")
    REF_DIR.mkdir(parents=True, exist_ok=True)

    # Tokenizer: vocabulary from the corpus, files as save_pretrained writes them, open_clip's HFTokenizer.
    basic = BasicTokenizer(do_lower_case=True)
    vocab = build_vocab(basic)
    fast, slow = write_tokenizer(vocab)
    tok = HFTokenizer(str(MODEL_DIR), context_length=CONTEXT, clean="whitespace")
    corpus = tokenizer_fixture(tok, fast, slow)
    (REF_DIR / "wordpiece.json").write_text(json.dumps(
        {"context_length": CONTEXT, "vocab_size": len(vocab), "texts": corpus}, ensure_ascii=False, indent=1))

    # Model.
    bert_config = BertConfig(vocab_size=len(vocab), **BERT)
    bert_config._attn_implementation = "eager"
    torch.manual_seed(SEED)
    model = CustomTextCLIP(MODEL_CFG, bert_config).eval()
    perturb_(model, SEED)
    bert_config.save_pretrained(str(MODEL_DIR))
    hub_cfg = {"model_cfg": MODEL_CFG, "preprocess_cfg": {"mean": list(MEAN), "std": list(STD),
                                                           "interpolation": "bicubic", "resize_mode": "shortest"}}
    (MODEL_DIR / "open_clip_config.json").write_text(json.dumps(hub_cfg, indent=2))
    sd = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    # transformers < 4.31 saved this buffer with every BERT; keep it so the loader is tested on it.
    sd["text.transformer.embeddings.position_ids"] = torch.arange(BERT["max_position_embeddings"])[None]
    safetensors.torch.save_file(sd, str(MODEL_DIR / "open_clip_model.safetensors"))
    reloaded = safetensors.torch.load_file(str(MODEL_DIR / "open_clip_model.safetensors"))
    reloaded.pop("text.transformer.embeddings.position_ids")
    model.load_state_dict(reloaded, strict=True)

    # Images: seeded random normalised pixels, plus one real image through open_clip's preprocessing.
    g = torch.Generator().manual_seed(SEED + 1)
    size = MODEL_CFG["vision_cfg"]["image_size"]
    pixels = torch.randn((3, 3, size, size), generator=g)
    pp = image_transform_v2(PreprocessCfg(size=size, mean=MEAN, std=STD, interpolation="bicubic",
                                          resize_mode="shortest"), is_train=False)
    real = pp(Image.open(FIXTURES / CLI_IMAGE)).unsqueeze(0)
    pixels = torch.cat([pixels, real])
    image_emb = model.encode_image(pixels)
    image_feat = model.visual.forward_features(pixels)

    ids = torch.tensor([corpus[i]["ids"] for i in EMBED_TEXTS])
    text_emb = model.encode_text(ids)
    # Batch independence: one text at a time gives the same embeddings (padding is masked).
    alone = torch.cat([model.encode_text(ids[i:i + 1]) for i in range(len(EMBED_TEXTS))])
    assert float((alone - text_emb).abs().max()) < 1e-5

    safetensors.torch.save_file({"pixels": pixels.contiguous()}, str(REF_DIR / "pixels.safetensors"))
    (REF_DIR / "reference.json").write_text(json.dumps({
        "model": "tiny-panderm",
        "logit_scale": float(model.logit_scale.item()),
        "cli_image": CLI_IMAGE,
        "texts": [{"text": CORPUS[i], "ids": corpus[i]["ids"], "embedding": floats(text_emb[j])}
                  for j, i in enumerate(EMBED_TEXTS)],
        "images": [{"pixels_row": i, "embedding": floats(image_emb[i]), "feature": floats(image_feat[i])}
                   for i in range(pixels.shape[0])],
    }, ensure_ascii=False))
    log(f"  |image embedding| ~ {float(image_emb.abs().mean()):.3f}, |text embedding| ~ "
        f"{float(text_emb.abs().mean()):.3f}")

    total = 0
    for d in (MODEL_DIR, REF_DIR):
        for f in sorted(d.iterdir()):
            total += f.stat().st_size
            log(f"  {f.relative_to(REPO)}: {f.stat().st_size / 1e3:.1f} kB")
    log(f"total committed size: {total / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
