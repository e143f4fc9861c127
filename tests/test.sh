#!/usr/bin/env bash
# Black-box checks of a running worker, the way Immich talks to it (bash + curl + python3 stdlib).
#
#   BASE_URL=http://127.0.0.1:3003 tests/test.sh
#
# Environment: BASE_URL, CLIP_MODEL (ViT-B-32__openai), CLIP_DIM (derived from CLIP_MODEL),
# FACE_MODEL (buffalo_l), OCR_MODEL (PP-OCRv5_mobile), OCR_PHRASE (HELLO WORLD), CURL_TIMEOUT (120 s),
# PYTHON (python3). The CLIP ranking check is meaningful only with real weights, so it is skipped
# when /health reports an emulated device. The OCR check needs Pillow in $PYTHON to draw its image,
# else it is skipped.
# Prints "N passed, M failed" last and exits non-zero when anything failed.
set -uo pipefail

BASE_URL=${BASE_URL:-http://127.0.0.1:3003}
BASE_URL=${BASE_URL%/}
CLIP_MODEL=${CLIP_MODEL:-ViT-B-32__openai}
FACE_MODEL=${FACE_MODEL:-buffalo_l}
OCR_MODEL=${OCR_MODEL:-PP-OCRv5_mobile}
OCR_PHRASE=${OCR_PHRASE:-HELLO WORLD}
CURL_TIMEOUT=${CURL_TIMEOUT:-120}
PYTHON=${PYTHON:-python3}
case $CLIP_MODEL in
  ViT-B-32__openai | ViT-B-16__openai) default_dim=512 ;;
  ViT-B-16-SigLIP__webli | ViT-B-32-SigLIP2-256__webli) default_dim=768 ;;
  *) default_dim= ;;
esac
CLIP_DIM=${CLIP_DIM:-$default_dim}

PASSED=0
FAILED=0
SKIPPED=0
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

pass() { PASSED=$((PASSED + 1)); printf 'PASS  %s\n' "$1"; }
fail() { FAILED=$((FAILED + 1)); printf 'FAIL  %s: %s\n' "$1" "$2"; }
skip() { SKIPPED=$((SKIPPED + 1)); printf 'SKIP  %s: %s\n' "$1" "$2"; }

# The Python side (stdlib, Pillow optional): image generation and JSON assertions. Exit 0 = pass, 77 = skip, else fail
# with the reason on stdout.
cat >"$WORK/check.py" <<'PY'
import json, math, struct, sys, zlib


def png(path, w, h, rgb):
    row = b"\0" + bytes(rgb) * w
    raw = zlib.compress(row * h)
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    body = chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")
    open(path, "wb").write(b"\x89PNG\r\n\x1a\n" + body)


def text_image(path, phrase):
    try:
        from PIL import Image, ImageDraw, ImageFont
    except ImportError:
        print(sys.executable, "has no Pillow to draw the text image")
        sys.exit(77)
    try:
        font = ImageFont.load_default(size=72)
    except (TypeError, OSError):
        try:
            font = ImageFont.truetype("DejaVuSans-Bold.ttf", 72)
        except OSError:
            print("no scalable font available to Pillow")
            sys.exit(77)
    img = Image.new("RGB", (1000, 300), "white")
    ImageDraw.Draw(img).text((60, 100), phrase, fill="black", font=font)
    img.save(path, "JPEG", quality=95)


def load(path):
    try:
        return json.load(open(path))
    except ValueError:
        raise AssertionError("body is not JSON: " + open(path, errors="replace").read(200))


def vector(text, dim):
    assert isinstance(text, str), "embedding is not a JSON string (Immich stores the string as is)"
    values = json.loads(text)
    assert len(values) == dim, f"{len(values)} values, expected {dim}"
    assert all(isinstance(v, (int, float)) and math.isfinite(v) for v in values), "non-finite or non-number value"
    return values


def unit(values):
    norm = math.sqrt(sum(v * v for v in values))
    assert abs(norm - 1) < 1e-3, f"norm {norm:.5f}, expected 1"
    return values


def check_clip(path, dim, w=None, h=None):
    body = load(path)
    unit(vector(body.get("clip"), int(dim)))
    if w is None:
        assert "imageWidth" not in body, "a text response carries imageWidth"
    else:
        assert (body.get("imageWidth"), body.get("imageHeight")) == (int(w), int(h)), \
            f"image size {body.get('imageWidth')}x{body.get('imageHeight')}, expected {w}x{h}"


def rank(text_path, expected, *image_paths):
    query = json.loads(load(text_path)["clip"])
    scores = [sum(a * b for a, b in zip(query, json.loads(load(p)["clip"]))) for p in image_paths]
    best = max(range(len(scores)), key=scores.__getitem__)
    assert best == int(expected), f"ranked image {best} first (cosines {[round(s, 4) for s in scores]}), expected {expected}"


def faces(path):
    body = load(path)
    found = body.get("facial-recognition")
    assert isinstance(found, list), f"facial-recognition is {type(found).__name__}, expected a list"
    for face in found:
        box = face["boundingBox"]
        assert set(box) == {"x1", "y1", "x2", "y2"}, f"box keys {sorted(box)}"
        assert all(float(v).is_integer() for v in box.values()), f"box {box} is not integral"
        assert box["x1"] < box["x2"] and box["y1"] < box["y2"], f"box {box} is empty"
        vector(face["embedding"], 512)
        assert isinstance(face["score"], (int, float)), "score is not a number"
    print(f"{len(found)} face(s)")


def ocr(path, phrase):
    result = load(path).get("ocr")
    assert isinstance(result, dict), f"ocr is {type(result).__name__}"
    n = len(result["text"])
    assert len(result["box"]) == 8 * n and len(result["boxScore"]) == n and len(result["textScore"]) == n, \
        "box/boxScore/textScore lengths do not match text"
    assert all(0 <= v < 1 for v in result["box"]), "box values are not normalised to [0, 1)"
    def squash(s):
        return "".join(s.split()).upper()
    assert squash(phrase) in squash("".join(result["text"])), f"read {result['text']}, expected {phrase!r}"


def emulated(path):
    """Exit 0 when /health says the device is emulated."""
    try:
        body = json.load(open(path))
    except (OSError, ValueError):
        sys.exit(1)
    def walk(node):
        if isinstance(node, dict):
            return any(("emulat" in k.lower() and v is True) or walk(v) for k, v in node.items())
        if isinstance(node, list):
            return any(walk(v) for v in node)
        return isinstance(node, str) and node.lower() in ("emulator", "emulated")
    sys.exit(0 if walk(body) else 1)


command, args = sys.argv[1], sys.argv[2:]
try:
    if command == "png":
        png(args[0], int(args[1]), int(args[2]), [int(a) for a in args[3:6]])
    elif command == "text-image":
        text_image(args[0], args[1])
    elif command == "emulated":
        emulated(args[0])
    else:
        {"clip": check_clip, "rank": rank, "faces": faces, "ocr": ocr}[command](*args)
except (AssertionError, KeyError, OSError, TypeError, ValueError) as exc:
    print(f"{type(exc).__name__}: {exc}" if not isinstance(exc, AssertionError) else exc)
    sys.exit(1)
PY

py() { "$PYTHON" "$WORK/check.py" "$@"; }

# predict NAME ENTRIES [image FILE | text STRING]: body to $WORK/NAME.json, prints "NAME STATUS".
predict() {
  local name=$1 entries=$2 kind=${3:-} value=${4:-}
  local args=(-sS -o "$WORK/$name.json" -w '%{http_code}' --max-time "$CURL_TIMEOUT" --form-string "entries=$entries")
  case $kind in
    image) args+=(-F "image=@$value;filename=blob;type=application/octet-stream") ;;
    text) args+=(--form-string "text=$value") ;;
  esac
  printf '%s %s' "$name" "$(curl "${args[@]}" "$BASE_URL/predict" 2>/dev/null)"
}

# expect LABEL "NAME STATUS" WANTED [python check args...]
expect() {
  local label=$1 name=${2% *} status=${2##* } wanted=$3 out
  shift 3
  if [[ $status != "$wanted" ]]; then
    fail "$label" "HTTP ${status:-none}, expected $wanted ($(head -c 200 "$WORK/$name.json" 2>/dev/null))"
    return 1
  fi
  if (($#)); then
    if ! out=$(py "$@" 2>&1); then
      fail "$label" "$out"
      return 1
    fi
  fi
  pass "$label${out:+ ($out)}"
}

clip_visual='{"clip":{"visual":{"modelName":"'$CLIP_MODEL'"}}}'
clip_textual='{"clip":{"textual":{"modelName":"'$CLIP_MODEL'","options":{}}}}'
faces_entries='{"facial-recognition":{"detection":{"modelName":"'$FACE_MODEL'","options":{"minScore":0.7}},"recognition":{"modelName":"'$FACE_MODEL'"}}}'
ocr_entries='{"ocr":{"detection":{"modelName":"'$OCR_MODEL'","options":{"minScore":0.5,"maxResolution":736}},"recognition":{"modelName":"'$OCR_MODEL'","options":{"minScore":0.8}}}}'

printf 'Testing %s (CLIP %s, %s-d)\n' "$BASE_URL" "$CLIP_MODEL" "${CLIP_DIM:-?}"

# --- liveness -------------------------------------------------------------------------------
body=$(curl -sS --max-time 2 "$BASE_URL/ping" 2>&1)
if [[ $body == pong ]]; then
  pass "GET /ping = pong"
else
  fail "GET /ping = pong" "got '${body:0:200}'"
  printf 'no worker answers at %s; nothing else tested\n%s passed, %s failed\n' "$BASE_URL" "$PASSED" "$FAILED"
  exit 1
fi
body=$(curl -sS --max-time 5 "$BASE_URL/" 2>&1)
if [[ $body == *'"Immich ML"'* ]]; then pass "GET / names Immich ML"; else fail "GET / names Immich ML" "got '${body:0:200}'"; fi

# --- CLIP -------------------------------------------------------------------------------------
py png "$WORK/red.png" 320 240 220 20 20
py png "$WORK/green.png" 320 240 20 200 20
py png "$WORK/blue.png" 320 240 20 20 220
if [[ -z $CLIP_DIM ]]; then
  skip "CLIP" "set CLIP_DIM for model $CLIP_MODEL"
else
  clip_failures=$FAILED
  for colour in red green blue; do
    expect "clip visual $colour" "$(predict "img-$colour" "$clip_visual" image "$WORK/$colour.png")" 200 \
      clip "$WORK/img-$colour.json" "$CLIP_DIM" 320 240
    expect "clip textual $colour" "$(predict "txt-$colour" "$clip_textual" text "a photo of the color $colour")" 200 \
      clip "$WORK/txt-$colour.json" "$CLIP_DIM"
  done
  curl -sS --max-time 5 -o "$WORK/health.json" "$BASE_URL/health" 2>/dev/null
  if ((FAILED > clip_failures)); then
    skip "clip text ranks the matching image first" "the embeddings above failed"
  elif py emulated "$WORK/health.json"; then
    skip "clip text ranks the matching image first" "/health reports an emulated device (synthetic weights)"
  else
    index=0
    for colour in red green blue; do
      if out=$(py rank "$WORK/txt-$colour.json" "$index" "$WORK/img-red.json" "$WORK/img-green.json" "$WORK/img-blue.json" 2>&1); then
        pass "clip text '$colour' ranks the $colour image first"
      else
        fail "clip text '$colour' ranks the $colour image first" "$out"
      fi
      index=$((index + 1))
    done
  fi
fi

# --- faces ------------------------------------------------------------------------------------
py png "$WORK/face.png" 640 480 180 150 120
result=$(predict faces "$faces_entries" image "$WORK/face.png")
if [[ ${result##* } == 400 ]] && grep -q "FACE_MODEL=" "$WORK/faces.json"; then
  # The worker runs another pack's own recogniser (its FACE_MODEL): it refuses $FACE_MODEL by design.
  skip "faces: list with integral boxes" "the worker serves another pack than $FACE_MODEL (set FACE_MODEL for this test)"
else
  expect "faces: list with integral boxes" "$result" 200 faces "$WORK/faces.json"
fi

# --- OCR --------------------------------------------------------------------------------------
if out=$(py text-image "$WORK/text.jpg" "$OCR_PHRASE" 2>&1); then
  expect "ocr reads '$OCR_PHRASE'" "$(predict ocr "$ocr_entries" image "$WORK/text.jpg")" 200 ocr "$WORK/ocr.json" "$OCR_PHRASE"
else
  skip "ocr reads '$OCR_PHRASE'" "$out"
fi

# --- error matrix -----------------------------------------------------------------------------
printf 'this is not an image' >"$WORK/corrupt.jpg"
expect "422 for entries that are not JSON" "$(predict e422 'not json' text 'a dog')" 422
expect "400 for recognition without detection" \
  "$(predict e400rec '{"facial-recognition":{"recognition":{"modelName":"'"$FACE_MODEL"'"}}}' image "$WORK/face.png")" 400
expect "400 for neither image nor text" "$(predict e400none "$clip_textual")" 400
expect "400 for a corrupt image" "$(predict e400img "$clip_visual" image "$WORK/corrupt.jpg")" 400
status=$(curl -sS -o "$WORK/e405.json" -w '%{http_code}' --max-time 5 "$BASE_URL/predict" 2>/dev/null)
expect "405 for GET /predict" "e405 $status" 405

# --- liveness under load ----------------------------------------------------------------------
py png "$WORK/big.png" 1920 1440 90 120 150
pids=()
for i in 1 2 3 4 5 6 7 8; do
  if ((i % 2)); then entries=$clip_visual; else entries=$ocr_entries; fi
  predict "load-$i" "$entries" image "$WORK/big.png" >"$WORK/load-$i.status" &
  pids+=($!)
done
sleep 0.3
timing=$(curl -sS -o "$WORK/ping-load.txt" -w '%{http_code} %{time_total}' --max-time 2 "$BASE_URL/ping" 2>/dev/null)
if [[ $timing == "200 "* && $(cat "$WORK/ping-load.txt") == pong ]]; then
  pass "/ping answers within 2 s with 8 predictions in flight (${timing#* } s)"
else
  fail "/ping answers within 2 s with 8 predictions in flight" "got '${timing:-timeout}'"
fi
wait "${pids[@]}"
bad=()
for i in 1 2 3 4 5 6 7 8; do
  status=$(cat "$WORK/load-$i.status")
  [[ $status == "load-$i 200" ]] || bad+=("#$i: HTTP ${status##* }")
done
if ((${#bad[@]})); then fail "8 concurrent predictions succeed" "${bad[*]}"; else pass "8 concurrent predictions succeed"; fi

printf '%s passed, %s failed, %s skipped\n' "$PASSED" "$FAILED" "$SKIPPED"
((FAILED == 0))
