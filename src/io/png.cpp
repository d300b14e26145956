// libpng reports errors by longjmp: every libpng call sits in a function that set a jmp_buf
// and holds only trivially destructible locals across it (no C++ objects with destructors
// between setjmp and a possible longjmp).
#include "io/png.h"

#include <png.h>

#include <cerrno>
#include <csetjmp>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>

namespace sd35 {
namespace {

struct FileCloser {
  void operator()(std::FILE* f) const {
    if (f) std::fclose(f);
  }
};
using FilePtr = std::unique_ptr<std::FILE, FileCloser>;

void on_error(png_structp png, png_const_charp msg) {
  auto* buf = static_cast<char*>(png_get_error_ptr(png));
  if (buf) std::snprintf(buf, 256, "%s", msg);
  png_longjmp(png, 1);
}
void on_warning(png_structp, png_const_charp) {}

// Returns false on a libpng error (message in err).
// Appends libpng's output to the std::string given as io pointer (encode_png). A throwing
// append cannot unwind through libpng, so allocation failure becomes a libpng error.
void write_to_string(png_structp png, png_bytep data, png_size_t n) {
  auto* out = static_cast<std::string*>(png_get_io_ptr(png));
  try {
    out->append(reinterpret_cast<const char*>(data), n);
  } catch (...) {
    png_error(png, "out of memory");
  }
}
void flush_nothing(png_structp) {}

// Writes to `f`, or into *mem when mem is given. Returns false on a libpng error (message in
// err).
bool write_impl(std::FILE* f, std::string* mem, const uint8_t* pixels, png_uint_32 w,
                png_uint_32 h, png_text* texts, int ntext, char* err) {
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, err, on_error, on_warning);
  if (!png) return false;
  png_infop info = png_create_info_struct(png);
  if (!info || setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, info ? &info : nullptr);
    return false;
  }
  if (mem)
    png_set_write_fn(png, mem, write_to_string, flush_nothing);
  else
    png_init_io(png, f);
  png_set_IHDR(png, info, w, h, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  // ComfyUI saves with compress_level 4: a fair speed/size trade-off.
  png_set_compression_level(png, 4);
  if (ntext > 0) png_set_text(png, info, texts, ntext);
  png_write_info(png, info);
  for (png_uint_32 y = 0; y < h; ++y)
    png_write_row(png, const_cast<png_bytep>(pixels + size_t(y) * w * 3));
  png_write_end(png, info);
  png_destroy_write_struct(&png, &info);
  return true;
}

struct ReadOut {
  png_uint_32 w = 0, h = 0;
  uint8_t* pixels = nullptr;  // malloc'ed by read_impl
  png_bytepp rows = nullptr;  // png_malloc'ed row pointers (freed on error too)
  std::vector<PngText>* text = nullptr;
};

bool read_impl(std::FILE* f, ReadOut* out, bool want_pixels, char* err) {
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, err, on_error, on_warning);
  if (!png) return false;
  png_infop info = png_create_info_struct(png);
  // The buffer lives in *out, not in a local: locals modified after setjmp are unreliable.
  if (!info || setjmp(png_jmpbuf(png))) {
    std::free(out->pixels);
    out->pixels = nullptr;
    if (out->rows) png_free(png, out->rows);
    out->rows = nullptr;
    png_destroy_read_struct(&png, info ? &info : nullptr, nullptr);
    return false;
  }
  png_init_io(png, f);
  // Refuse absurd sizes before allocating (a fuzzed header must not exhaust memory).
  png_set_user_limits(png, 16384, 16384);
  png_read_info(png, info);
  const png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
  const int color = png_get_color_type(png, info), depth = png_get_bit_depth(png, info);
  if (depth == 16) png_set_strip_16(png);
  if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (color == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
  if (png_get_valid(png, info, PNG_INFO_tRNS)) png_set_tRNS_to_alpha(png);
  if (color == PNG_COLOR_TYPE_GRAY || color == PNG_COLOR_TYPE_GRAY_ALPHA) png_set_gray_to_rgb(png);
  png_set_strip_alpha(png);
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  if (want_pixels) {
    if (png_get_rowbytes(png, info) != size_t(w) * 3) png_error(png, "unexpected row layout");
    out->pixels = static_cast<uint8_t*>(std::malloc(size_t(w) * h * 3));
    if (!out->pixels) png_error(png, "out of memory");
    png_bytep buf = out->pixels;
    // Interlaced images need every pass over all rows: read into row pointers at once.
    out->rows = static_cast<png_bytepp>(png_malloc(png, sizeof(png_bytep) * h));
    for (png_uint_32 y = 0; y < h; ++y) out->rows[y] = buf + size_t(y) * w * 3;
    png_read_image(png, out->rows);
    png_free(png, out->rows);
    out->rows = nullptr;
    png_read_end(png, info);
  }
  png_textp texts = nullptr;
  int ntext = 0;
  if (out->text && png_get_text(png, info, &texts, &ntext) > 0) {
    for (int i = 0; i < ntext; ++i)
      out->text->push_back({texts[i].key, texts[i].text
                                              ? std::string(texts[i].text, texts[i].text_length)
                                              : std::string()});
  }
  out->w = w;
  out->h = h;
  png_destroy_read_struct(&png, &info, nullptr);
  return true;
}

Result<FilePtr> open_file(const std::string& path, const char* mode) {
  FilePtr f(std::fopen(path.c_str(), mode));
  if (!f) return io_error("cannot open " + path + ": " + std::strerror(errno));
  return f;
}

}  // namespace

// The image as [H, W, 3] and the tEXt entries in libpng's form (pointing into `text`).
Result<Tensor> prepare_write(const Tensor& image_u8, const std::vector<PngText>& text,
                             std::vector<png_text>& texts) {
  Tensor img = image_u8.ndim() == 4 && image_u8.size(0) == 1 ? image_u8.select(0, 0) : image_u8;
  if (img.ndim() != 3 || img.size(2) != 3 || img.dtype() != DType::kU8 || !img.is_contiguous() ||
      img.size(0) < 1 || img.size(1) < 1)
    return invalid_argument("write_png needs contiguous uint8 [H, W, 3], got " +
                            image_u8.describe());
  for (const auto& t : text)
    if (t.key.empty() || t.key.size() > 79)
      return invalid_argument("PNG text keyword must have 1..79 characters");
  texts.resize(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    std::memset(&texts[i], 0, sizeof(png_text));
    texts[i].compression = PNG_TEXT_COMPRESSION_NONE;
    texts[i].key = const_cast<char*>(text[i].key.c_str());
    texts[i].text = const_cast<char*>(text[i].value.c_str());
    texts[i].text_length = text[i].value.size();
  }
  return img;
}

Result<std::string> encode_png(const Tensor& image_u8, const std::vector<PngText>& text) {
  std::vector<png_text> texts;
  SD35_ASSIGN_OR_RETURN(Tensor img, prepare_write(image_u8, text, texts));
  std::string out;
  char err[256] = "libpng error";
  if (!write_impl(nullptr, &out, img.data_as<const uint8_t>(), png_uint_32(img.size(1)),
                  png_uint_32(img.size(0)), texts.data(), int(texts.size()), err))
    return internal_error(std::string("encoding PNG: ") + err);
  return out;
}

Status write_png(const std::string& path, const Tensor& image_u8,
                 const std::vector<PngText>& text) {
  std::vector<png_text> texts;
  SD35_ASSIGN_OR_RETURN(Tensor img, prepare_write(image_u8, text, texts));
  SD35_ASSIGN_OR_RETURN(FilePtr f, open_file(path, "wb"));
  char err[256] = "libpng error";
  if (!write_impl(f.get(), nullptr, img.data_as<const uint8_t>(), png_uint_32(img.size(1)),
                  png_uint_32(img.size(0)), texts.data(), int(texts.size()), err))
    return io_error("writing " + path + ": " + err);
  if (std::fflush(f.get()) != 0 || std::ferror(f.get()))
    return io_error("writing " + path + ": " + std::strerror(errno));
  FILE* raw = f.release();
  if (std::fclose(raw) != 0) return io_error("closing " + path + ": " + std::strerror(errno));
  return ok_status();
}

Result<Tensor> read_png(const std::string& path) {
  SD35_ASSIGN_OR_RETURN(FilePtr f, open_file(path, "rb"));
  unsigned char sig[8] = {};
  if (std::fread(sig, 1, 8, f.get()) != 8 || png_sig_cmp(sig, 0, 8) != 0)
    return data_loss(path + " is not a PNG file");
  std::rewind(f.get());
  char err[256] = "libpng error";
  ReadOut out;
  if (!read_impl(f.get(), &out, true, err)) return data_loss("reading " + path + ": " + err);
  std::shared_ptr<void> owner(out.pixels, std::free);
  return Tensor::view_of(out.pixels, DType::kU8, {int64_t(out.h), int64_t(out.w), 3}, Device::kCPU,
                         owner);
}

Result<std::vector<PngText>> read_png_text(const std::string& path) {
  SD35_ASSIGN_OR_RETURN(FilePtr f, open_file(path, "rb"));
  std::vector<PngText> text;
  ReadOut out;
  out.text = &text;
  char err[256] = "libpng error";
  // Pixels are read too: tEXt chunks after IDAT only appear once the image data is consumed.
  if (!read_impl(f.get(), &out, true, err)) return data_loss("reading " + path + ": " + err);
  std::free(out.pixels);
  return text;
}

}  // namespace sd35
