// pacs_insert_nodule: the PACS side of the nodule-insertion workflow, as a C++ host of libnodus.
//
//     pacs_insert_nodule MODEL_DIR INPUT.dcm OUTPUT.dcm --center X,Y --diameter D
//                        [--lora NAME:WEIGHT]... [--subtlety S] [--seed S] [--steps N]
//
// It reads a grayscale radiograph with DCMTK, paints a synthetic nodule into it with a nodule
// model folder (models/nodule-demo: dit/, vae/, scheduler/, lora-<characteristic>, workflow.json)
// through the C ABI of libnodus (include/nodus.h), and writes a derived DICOM that says in its
// header that it holds synthetic content. The input is never changed.
//
// The workflow is the one `nodus insert-nodule` runs (Sources/nodus-cli/InsertNoduleCommand.swift),
// and the stored pixels it writes are the CLI's, bit for bit
// (bindings/python/tests/test_cpp_example.py compares them):
//   1. the stored values are mapped linearly to the model's pixels in [-1, 1]: the file's first
//      window, else the range its bits can store; MONOCHROME1 flipped;
//   2. the model's patch around the centre is resampled from the image as the image resized to
//      the model's standard size would have it (workflow.json's standard_size);
//   3. the patch, with the nodule's disk cut out, is VAE-encoded; the DiT samples the latent
//      with guidance, conditioned on [latent mask, masked-image latent], with the LoRAs;
//   4. the decoded patch is resampled back and blended in with a feathered seam; pixels outside
//      the patch keep their stored values exactly; the output has the input's bit depth.
//
// Only libnodus's public C ABI and DCMTK are used: copy this file into a host and adapt it.
// Limitations: as the CLI, one grayscale frame, 8 or 16 bits allocated, no Modality LUT
// Sequence; unlike it, a disk mask only (the CLI also takes a mask file) and
// the derived image only (the CLI also writes the mask and a JSON sidecar).
// Build: make -C examples/cpp (see its Makefile for the compiler and linker flags).
// Exit codes: 0 the output is written; 1 a failure (the message on stderr; nothing is written);
// 2 a usage error.
#include <dcmtk/dcmdata/dcostrmb.h>
#include <dcmtk/dcmdata/dcrledrg.h>
#include <dcmtk/dcmdata/dctk.h>
#include <dcmtk/dcmjpeg/djdecode.h>
#include <dcmtk/dcmjpls/djdecode.h>
#include <dcmtk/oflog/oflog.h>
#include <dcmtk/ofstd/ofdatime.h>

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "nodus.h"

namespace {

// ---- Errors ---------------------------------------------------------------------------------

// A mistake in the command line (exit code 2); any other std::exception is a failure (1).
struct UsageError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// Turns a failed libnodus call into an exception carrying the library's own message, which
// names the function and the parameter (nodus_last_error() is per thread).
void check(nodus_status status, const std::string &call) {
    if (status != NODUS_OK) {
        throw std::runtime_error(call + " failed (" + nodus_status_name(status) + "): " + nodus_last_error());
    }
}

std::string format(const char *pattern, double value) {
    char text[64];
    std::snprintf(text, sizeof text, pattern, value);
    return text;
}

// ---- libnodus handles and tensors --------------------------------------------------------------

// The library frees what it allocates: each handle goes back through its own *_free function.
struct ModelFree {
    void operator()(nodus_model *model) const noexcept { nodus_model_free(model); }
};
struct SchedulerFree {
    void operator()(nodus_scheduler *scheduler) const noexcept { nodus_scheduler_free(scheduler); }
};
using Model = std::unique_ptr<nodus_model, ModelFree>;
using Scheduler = std::unique_ptr<nodus_scheduler, SchedulerFree>;

Model loadModel(const std::string &path) {
    nodus_model_params params;
    nodus_model_params_init(&params);  // threads 0: all cores; float32
    nodus_model *model = nullptr;
    check(nodus_model_load(path.c_str(), &params, &model), "nodus_model_load");
    return Model(model);
}

Scheduler loadScheduler(const std::string &path) {
    nodus_scheduler *scheduler = nullptr;
    check(nodus_scheduler_load(path.c_str(), &scheduler), "nodus_scheduler_load");
    return Scheduler(scheduler);
}

// A float32 tensor the host owns; view() describes it to the C ABI for the length of one call.
struct Tensor {
    std::vector<int64_t> shape;
    std::vector<float> values;

    explicit Tensor(std::vector<int64_t> dimensions) : shape(std::move(dimensions)) {
        size_t count = 1;
        for (int64_t dimension : shape) count *= static_cast<size_t>(dimension);
        values.assign(count, 0.0f);
    }

    nodus_tensor view() {
        nodus_tensor tensor{};
        tensor.dtype = NODUS_DTYPE_FLOAT32;
        tensor.ndim = static_cast<int32_t>(shape.size());
        std::copy(shape.begin(), shape.end(), tensor.shape);
        tensor.data = values.data();
        tensor.size_bytes = values.size() * sizeof(float);
        return tensor;
    }
};

// ---- JSON --------------------------------------------------------------------------------------

// The few settings read from diffusers' config.json and workflow.json are top-level numbers,
// strings and arrays of flat files. A real host uses its JSON library; this lookup keeps the
// sample free of one.
class FlatJSON {
public:
    explicit FlatJSON(std::string text) : text_(std::move(text)) {}

    static FlatJSON file(const std::string &path) {
        std::ifstream stream(path);
        if (!stream) throw std::runtime_error("cannot read '" + path + "': " + std::strerror(errno));
        std::ostringstream text;
        text << stream.rdbuf();
        return FlatJSON(text.str());
    }

    double number(const std::string &key, double fallback) const {
        const char *value = find(key);
        if (!value) return fallback;
        char *end = nullptr;
        double result = std::strtod(value, &end);
        return end == value ? fallback : result;
    }

    std::string string(const std::string &key, const std::string &fallback) const {
        const char *value = find(key);
        if (!value || *value != '"') return fallback;
        const char *end = std::strchr(value + 1, '"');
        return end ? std::string(value + 1, end) : fallback;
    }

    // The number of elements of an array of numbers or simple strings; 0 when absent.
    size_t arrayLength(const std::string &key) const {
        const char *value = find(key);
        if (!value || *value != '[') return 0;
        const char *end = std::strchr(value, ']');
        if (!end) return 0;
        std::string inside(value + 1, end);
        if (inside.find_first_not_of(" \t\r\n") == std::string::npos) return 0;
        return 1 + static_cast<size_t>(std::count(inside.begin(), inside.end(), ','));
    }

private:
    // The first character of the value of "key", or nullptr.
    const char *find(const std::string &key) const {
        const std::string quoted = "\"" + key + "\"";
        for (size_t at = text_.find(quoted); at != std::string::npos; at = text_.find(quoted, at + 1)) {
            size_t colon = text_.find_first_not_of(" \t\r\n", at + quoted.size());
            if (colon == std::string::npos || text_[colon] != ':') continue;  // a string value, not a key
            size_t value = text_.find_first_not_of(" \t\r\n", colon + 1);
            return value == std::string::npos ? nullptr : text_.c_str() + value;
        }
        return nullptr;
    }

    std::string text_;
};

// ---- Reading the DICOM -------------------------------------------------------------------------

// Where stored values sit in each allocated word: bits (highBit - bitsStored + 1) ... highBit
// (PS3.5 8.1.1); the other bits may hold anything (old overlays).
struct PixelLayout {
    unsigned bitsAllocated = 16, bitsStored = 16, highBit = 15;
    bool isSigned = false;

    unsigned shift() const { return highBit + 1 - bitsStored; }
    uint32_t mask() const { return bitsStored >= 32 ? 0xffffffffu : (1u << bitsStored) - 1; }
    int32_t minimum() const { return isSigned ? -(1 << (bitsStored - 1)) : 0; }
    int32_t maximum() const { return isSigned ? (1 << (bitsStored - 1)) - 1 : static_cast<int32_t>(mask()); }

    int32_t unpack(uint32_t word) const {
        uint32_t bits = (word >> shift()) & mask();
        if (isSigned && ((bits >> (bitsStored - 1)) & 1)) return static_cast<int32_t>(bits) - (1 << bitsStored);
        return static_cast<int32_t>(bits);
    }
    uint32_t pack(int32_t value) const { return (static_cast<uint32_t>(value) & mask()) << shift(); }
};

// One grayscale frame: its stored values and what maps them to modality values and to display.
struct Radiograph {
    int width = 0, height = 0;
    PixelLayout layout;
    bool monochrome1 = false;  // low values are shown white
    double slope = 1, intercept = 0;
    std::optional<std::pair<double, double>> window;  // the first valid (centre, width)
    std::vector<int32_t> stored;                      // row-major

    // The modality value of a stored value, as a float: the CLI's (PixelStorage.value(ofStored:)).
    float value(int32_t storedValue) const { return static_cast<float>(storedValue * slope + intercept); }

    // The stored value nearest to a modality value, clamped to what the bits can store.
    int32_t storedValue(float value) const {
        double exact = (static_cast<double>(value) - intercept) / slope;
        if (!std::isfinite(exact)) return exact > 0 ? layout.maximum() : layout.minimum();
        double rounded = std::round(exact);  // halves away from zero, as Swift's rounded()
        return static_cast<int32_t>(std::clamp(rounded, double(layout.minimum()), double(layout.maximum())));
    }
};

// DCMTK's decoders are process-wide registrations: once, before the first file.
void prepareDCMTK() {
    OFLog::configure(OFLogger::FATAL_LOG_LEVEL);  // our messages say what went wrong
    DcmRLEDecoderRegistration::registerCodecs();
    DJDecoderRegistration::registerCodecs();
    DJLSDecoderRegistration::registerCodecs();
}

// Loads `path` with its pixel data decoded (RLE, JPEG, JPEG-LS); a syntax DCMTK cannot decode
// (JPEG 2000, for one) is refused by name.
void loadDICOM(const std::string &path, DcmFileFormat &file) {
    OFCondition status = file.loadFile(path.c_str());
    if (status.bad()) throw std::runtime_error("cannot read '" + path + "' as DICOM: " + status.text());
    DcmDataset *dataset = file.getDataset();
    if (!dataset->tagExists(DCM_PixelData)) throw std::runtime_error("'" + path + "' has no Pixel Data (not an image)");
    DcmXfer syntax(dataset->getOriginalXfer());
    if (syntax.isEncapsulated()) {
        status = dataset->chooseRepresentation(EXS_LittleEndianExplicit, nullptr);
        if (status.bad() || !dataset->canWriteXfer(EXS_LittleEndianExplicit)) {
            throw std::runtime_error("'" + path + "' is compressed as " + syntax.getXferName() + " (" +
                                     syntax.getXferID() + "), which DCMTK cannot decode; decompress it first " +
                                     "(for example with gdcmconv --raw)");
        }
    }
}

Radiograph readRadiograph(const std::string &path, DcmDataset &dataset) {
    auto fail = [&](const std::string &message) { return std::runtime_error("'" + path + "' " + message); };
    OFString photometric;
    dataset.findAndGetOFString(DCM_PhotometricInterpretation, photometric);
    Uint16 samplesPerPixel = 1;
    if (dataset.findAndGetUint16(DCM_SamplesPerPixel, samplesPerPixel).bad()) samplesPerPixel = 1;
    if (samplesPerPixel != 1 || (photometric != "MONOCHROME1" && photometric != "MONOCHROME2")) {
        throw fail("is a colour image (Photometric Interpretation " +
                   std::string(photometric.empty() ? "missing" : photometric.c_str()) + ", " +
                   std::to_string(samplesPerPixel) + " samples per pixel); only grayscale MONOCHROME1 and " +
                   "MONOCHROME2 radiographs are supported");
    }
    Sint32 frames = 1;
    if (dataset.findAndGetSint32(DCM_NumberOfFrames, frames).good() && frames > 1) {
        throw fail("has " + std::to_string(frames) + " frames; only single-frame images are supported");
    }
    if (dataset.tagExists(DCM_ModalityLUTSequence)) {
        throw fail("has a Modality LUT Sequence, which is not supported (only Rescale Slope and Intercept)");
    }
    Uint16 rows = 0, columns = 0, bitsAllocated = 0, bitsStored = 0, highBit = 0, representation = 0;
    if (dataset.findAndGetUint16(DCM_Rows, rows).bad() || dataset.findAndGetUint16(DCM_Columns, columns).bad() ||
        dataset.findAndGetUint16(DCM_BitsAllocated, bitsAllocated).bad() || rows == 0 || columns == 0) {
        throw fail("has no image (Rows, Columns or Bits Allocated missing)");
    }
    if (dataset.findAndGetUint16(DCM_BitsStored, bitsStored).bad()) bitsStored = bitsAllocated;
    if (dataset.findAndGetUint16(DCM_HighBit, highBit).bad()) highBit = bitsStored - 1;
    dataset.findAndGetUint16(DCM_PixelRepresentation, representation);
    if (bitsAllocated != 8 && bitsAllocated != 16) {
        throw fail("has " + std::to_string(bitsAllocated) + " bits allocated per pixel; only 8 and 16 are supported");
    }
    if (bitsStored < 1 || bitsStored > bitsAllocated || highBit < bitsStored - 1 || highBit >= bitsAllocated) {
        throw fail("has inconsistent Bits Stored / High Bit for its Bits Allocated");
    }

    Radiograph image;
    image.width = columns;
    image.height = rows;
    image.layout = PixelLayout{bitsAllocated, bitsStored, highBit, representation == 1};
    image.monochrome1 = photometric == "MONOCHROME1";
    Float64 slope = 1, intercept = 0;  // DCMTK zeroes them when the element is missing
    image.slope = dataset.findAndGetFloat64(DCM_RescaleSlope, slope).good() ? slope : 1;
    image.intercept = dataset.findAndGetFloat64(DCM_RescaleIntercept, intercept).good() ? intercept : 0;
    if (image.slope == 0) throw fail("has Rescale Slope 0");
    // The first window at least 1 wide (PS3.3 C.11.2.1.2); narrower ones are not valid windows.
    for (unsigned long index = 0;; index++) {
        Float64 centre = 0, width = 0;
        if (dataset.findAndGetFloat64(DCM_WindowCenter, centre, index).bad() ||
            dataset.findAndGetFloat64(DCM_WindowWidth, width, index).bad()) {
            break;
        }
        if (width >= 1) {
            image.window = std::make_pair(centre, width);
            break;
        }
    }

    const size_t count = static_cast<size_t>(rows) * columns;
    const Uint8 *bytes = nullptr;
    const Uint16 *words = nullptr;
    unsigned long length = 0;  // values for 16-bit data, bytes for 8-bit
    OFCondition status = bitsAllocated == 8 ? dataset.findAndGetUint8Array(DCM_PixelData, bytes, &length)
                                            : dataset.findAndGetUint16Array(DCM_PixelData, words, &length);
    if (status.bad() || (bitsAllocated == 8 ? !bytes : !words)) {
        throw fail("has no readable Pixel Data: " + std::string(status.text()));
    }
    if (length < count) throw fail("has fewer Pixel Data values than Rows x Columns");
    image.stored.resize(count);
    for (size_t index = 0; index < count; index++) {
        image.stored[index] = image.layout.unpack(bitsAllocated == 8 ? bytes[index] : words[index]);
    }
    return image;
}

// ---- The workflow's geometry and intensities (Sources/nodus-cli/Workflows/) ---------------------

// The weights of one target sample of a 1-D resize: the antialiased triangle (bilinear) filter
// of Pillow's resize, over the source samples [sourcesBegin, sourcesEnd) only.
struct ResizeWeights {
    int first = 0;                // the first source sample with a weight
    std::vector<double> weights;  // of sources first, first + 1, ...; they sum to 1 (or are empty)

    ResizeWeights(int target, int sourceSize, int targetSize, int sourcesBegin, int sourcesEnd) {
        const double scale = double(sourceSize) / double(targetSize);
        const double support = std::max(scale, 1.0);
        const double centre = (target + 0.5) * scale;
        const int lower = std::max(sourcesBegin, int(std::floor(centre - support - 0.5)));
        const int upper = std::min(sourcesEnd, int(std::ceil(centre + support + 0.5)) + 1);
        first = lower;
        for (int source = lower; source < upper; source++) {
            double weight = std::max(0.0, 1 - std::abs(source + 0.5 - centre) / support);
            if (weights.empty() && weight == 0) {
                first = source + 1;
                continue;
            }
            weights.push_back(weight);
        }
        while (!weights.empty() && weights.back() == 0) weights.pop_back();
        double total = 0;
        for (double weight : weights) total += weight;
        if (total > 0) {
            for (double &weight : weights) weight /= total;
        } else {
            weights.clear();
        }
    }
};

// The separable resize of `values` (row-major, `width` wide): rows.size() x columns.size().
std::vector<double> resample(const std::vector<double> &values, int width, const std::vector<ResizeWeights> &rows,
                             const std::vector<ResizeWeights> &columns) {
    std::vector<double> result(rows.size() * columns.size());
    for (size_t row = 0; row < rows.size(); row++) {
        for (size_t column = 0; column < columns.size(); column++) {
            double sum = 0;
            for (size_t rowOffset = 0; rowOffset < rows[row].weights.size(); rowOffset++) {
                size_t base = size_t(rows[row].first + int(rowOffset)) * width + columns[column].first;
                double line = 0;
                for (size_t columnOffset = 0; columnOffset < columns[column].weights.size(); columnOffset++) {
                    line += columns[column].weights[columnOffset] * values[base + columnOffset];
                }
                sum += rows[row].weights[rowOffset] * line;
            }
            result[row * columns.size() + column] = sum;
        }
    }
    return result;
}

// Where the model's patch sits: the seed standardises the radiograph to a square (960 x 960)
// and cuts a patch (256 x 256) around the centre. Only the patch is resampled, in and out.
class PatchPlacement {
public:
    PatchPlacement(int width, int height, int standardSize, int patchSize, double centreX, double centreY)
        : width_(width), height_(height), standard_(standardSize), patch_(patchSize), centreX_(centreX),
          centreY_(centreY) {
        if (!(centreX >= 0 && centreX < width && centreY >= 0 && centreY < height)) {
            throw UsageError("the centre (" + format("%g", centreX) + ", " + format("%g", centreY) +
                             ") is outside the " + std::to_string(width) + "x" + std::to_string(height) +
                             " image (x must be in 0 ... " + std::to_string(width - 1) + ", y in 0 ... " +
                             std::to_string(height - 1) + ")");
        }
        if (patchSize > standardSize) throw std::runtime_error("the model's patch does not fit its standard size");
        originColumn_ = start(centreX, scaleX());
        originRow_ = start(centreY, scaleY());
    }

    int originColumn() const { return originColumn_; }
    int originRow() const { return originRow_; }

    // The patch (row-major, patch^2) of `values` (row-major, the image's) resized to the standard size.
    std::vector<double> cut(const std::vector<double> &values) const {
        std::vector<ResizeWeights> rows, columns;
        for (int index = 0; index < patch_; index++) {
            rows.emplace_back(originRow_ + index, height_, standard_, 0, height_);
            columns.emplace_back(originColumn_ + index, width_, standard_, 0, width_);
        }
        return resample(values, width_, rows, columns);
    }

    // `values` with `patch` (standardised pixels) blended in: weight 1 inside, falling smoothly
    // to 0 over the seam at the patch's edge. Pixels outside the patch are returned unchanged.
    std::vector<double> paste(const std::vector<double> &patch, const std::vector<double> &values) const {
        std::vector<double> result = values;
        const auto rows = footprint(height_, originRow_), columns = footprint(width_, originColumn_);
        std::vector<ResizeWeights> rowWeights, columnWeights;  // over the patch's own pixels
        for (const auto &row : rows) {
            rowWeights.emplace_back(row.first, standard_, height_, originRow_, originRow_ + patch_);
            rowWeights.back().first -= originRow_;
        }
        for (const auto &column : columns) {
            columnWeights.emplace_back(column.first, standard_, width_, originColumn_, originColumn_ + patch_);
            columnWeights.back().first -= originColumn_;
        }
        const std::vector<double> resized = resample(patch, patch_, rowWeights, columnWeights);
        for (size_t rowNumber = 0; rowNumber < rows.size(); rowNumber++) {
            const double rowFeather = smoothstep(rows[rowNumber].second / featherWidth());
            for (size_t columnNumber = 0; columnNumber < columns.size(); columnNumber++) {
                const double weight = rowFeather * smoothstep(columns[columnNumber].second / featherWidth());
                const size_t index = size_t(rows[rowNumber].first) * width_ + columns[columnNumber].first;
                result[index] = values[index] + weight * (resized[rowNumber * columns.size() + columnNumber] - values[index]);
            }
        }
        return result;
    }

    // Row-major flags of the pixels paste() may change, or with `core` of those it replaces fully.
    std::vector<bool> region(bool core) const {
        const double least = core ? featherWidth() : 0;
        std::vector<bool> flags(size_t(width_) * height_, false);
        for (const auto &row : footprint(height_, originRow_)) {
            if (row.second < least) continue;
            for (const auto &column : footprint(width_, originColumn_)) {
                if (column.second >= least) flags[size_t(row.first) * width_ + column.first] = true;
            }
        }
        return flags;
    }

    // The nodule in the patch: a disk of `diameter` image pixels around the centre (an ellipse
    // in standardised pixels when the image is not square); 1 inside, 0 outside.
    std::vector<float> diskInPatch(double diameter) const {
        const double centreX = (centreX_ + 0.5) * scaleX() - 0.5 - originColumn_;
        const double centreY = (centreY_ + 0.5) * scaleY() - 0.5 - originRow_;
        const double radiusX = diameter / 2 * scaleX(), radiusY = diameter / 2 * scaleY();
        std::vector<float> mask(size_t(patch_) * patch_);
        for (size_t index = 0; index < mask.size(); index++) {
            const double x = (double(index % patch_) - centreX) / radiusX;
            const double y = (double(index / patch_) - centreY) / radiusY;
            mask[index] = x * x + y * y <= 1 ? 1.0f : 0.0f;
        }
        return mask;
    }

    // The same disk at the image's resolution.
    std::vector<bool> diskInImage(double diameter) const {
        const double radius = diameter / 2;
        std::vector<bool> mask(size_t(width_) * height_);
        for (size_t index = 0; index < mask.size(); index++) {
            const double x = double(index % width_) - centreX_, y = double(index / width_) - centreY_;
            mask[index] = x * x + y * y <= radius * radius;
        }
        return mask;
    }

private:
    double scaleX() const { return double(standard_) / width_; }
    double scaleY() const { return double(standard_) / height_; }
    // The seam's width in standardised pixels: a sixteenth of the patch.
    double featherWidth() const { return std::max(double(patch_) / 16, 1.0); }

    // The patch's first standardised pixel along an axis, moved inward near an edge.
    int start(double coordinate, double scale) const {
        const int wanted = int(std::floor((coordinate + 0.5) * scale - double(patch_) / 2 + 0.5));
        return std::clamp(wanted, 0, standard_ - patch_);
    }

    // The image pixels along one axis whose centres fall inside the patch, with their distance
    // in standardised pixels to the patch's nearer edge.
    std::vector<std::pair<int, double>> footprint(int size, int origin) const {
        const double scale = double(standard_) / size, lower = origin, upper = origin + patch_;
        std::vector<std::pair<int, double>> result;
        for (int index = 0; index < size; index++) {
            const double position = (index + 0.5) * scale;
            if (position > lower && position < upper) result.emplace_back(index, std::min(position - lower, upper - position));
        }
        return result;
    }

    static double smoothstep(double x) {
        const double t = std::clamp(x, 0.0, 1.0);
        return t * t * (3 - 2 * t);
    }

    int width_, height_, standard_, patch_;
    double centreX_, centreY_;
    int originColumn_ = 0, originRow_ = 0;
};

// The linear map between modality values and the model's pixels in [-1, 1] (-1 black, 1 white),
// from the first window (centre +- width / 2), else the range the stored bits can hold.
// Unclipped, so the way back is exact and blending pixels is blending values.
struct IntensityMapping {
    double lower = 0, upper = 0;
    bool inverted = false;

    IntensityMapping(const Radiograph &image, const std::string &path) : inverted(image.monochrome1) {
        if (image.window) {
            lower = image.window->first - image.window->second / 2;
            upper = image.window->first + image.window->second / 2;
        } else {
            const double ends[2] = {image.value(image.layout.minimum()), image.value(image.layout.maximum())};
            lower = std::min(ends[0], ends[1]);
            upper = std::max(ends[0], ends[1]);
        }
        if (!(upper > lower)) throw std::runtime_error("'" + path + "' has no intensity range to map to the model's pixels");
    }

    double pixel(double value) const {
        const double brightness = (value - lower) / (upper - lower);
        return 2 * (inverted ? 1 - brightness : brightness) - 1;
    }
    double value(double pixel) const {
        const double brightness = (pixel + 1) / 2;
        return lower + (inverted ? 1 - brightness : brightness) * (upper - lower);
    }
};

// ---- The nodule model --------------------------------------------------------------------------

int32_t printProgress(int32_t done, int32_t total, void *) {
    std::fprintf(stderr, "\rinsert-nodule: step %d/%d%s", int(done), int(total), done >= total ? "\n" : "");
    return 0;  // non-zero would cancel the run (NODUS_ERROR_CANCELLED)
}

// A nodule model folder, loaded once (a host keeps it for many images): a mask-conditioned DiT,
// its VAE and scheduler, and the characteristic LoRAs `lora-<name>.safetensors` or `lora-<name>/`.
class NoduleModel {
public:
    explicit NoduleModel(const std::string &folder) : folder_(folder) {
        struct stat status;
        if (::stat((folder + "/workflow.json").c_str(), &status) == 0) {
            const FlatJSON settings = FlatJSON::file(folder + "/workflow.json");
            standardSize_ = int(settings.number("standard_size", standardSize_));
            classLabel_ = int64_t(settings.number("class_label", 0));
            guidance_ = float(settings.number("guidance_scale", guidance_));
            subtletyAdapter_ = settings.string("subtlety_adapter", subtletyAdapter_);
        }
        for (const char *part : {"dit", "vae", "scheduler"}) {
            if (::stat((folder + "/" + part).c_str(), &status) != 0) {
                throw std::runtime_error("'" + folder + "' is not a nodule model folder: it has no " + part + "/");
            }
        }
        dit_ = loadModel(folder + "/dit");
        vae_ = loadModel(folder + "/vae");
        if (nodus_model_get_kind(dit_.get()) != NODUS_MODEL_DIT || nodus_model_get_kind(vae_.get()) != NODUS_MODEL_VAE) {
            throw std::runtime_error("'" + folder + "': dit/ must hold a DiT and vae/ a VAE");
        }
        scheduler_ = loadScheduler(folder + "/scheduler");

        const FlatJSON ditConfig(nodus_model_config_json(dit_.get())), vaeConfig(nodus_model_config_json(vae_.get()));
        scalingFactor_ = float(vaeConfig.number("scaling_factor", 0.18215));
        latentChannels_ = int(vaeConfig.number("latent_channels", 4));
        const size_t levels = std::max<size_t>(vaeConfig.arrayLength("block_out_channels"), 1);
        // A gray VAE, or an RGB one such as Stable Diffusion's: the gray patch goes to every input
        // channel, and the decoded channels are averaged back to gray.
        imageChannelsIn_ = int(vaeConfig.number("in_channels", 3));
        imageChannelsOut_ = int(vaeConfig.number("out_channels", 3));
        if (imageChannelsIn_ < 1 || imageChannelsOut_ < 1) {
            throw std::runtime_error("'" + folder + "/vae' has no image channels");
        }
        latentSize_ = int(ditConfig.number("sample_size", 0));
        patchSize_ = latentSize_ << (levels - 1);  // the encoder halves the size at every level but the last
        const int channels = int(ditConfig.number("in_channels", 0));
        if (latentSize_ <= 0 || channels != 2 * latentChannels_ + 1) {
            throw std::runtime_error("'" + folder + "/dit' takes " + std::to_string(channels) + " channels; a " +
                                     "mask-conditioned nodule model takes " + std::to_string(2 * latentChannels_ + 1) +
                                     " (latent, mask, masked-image latent)");
        }
        // In name order, as the CLI and Python load them.
        for (const auto &[name, path] : adapterFiles()) {
            check(nodus_model_load_lora(dit_.get(), path.c_str(), name.c_str()), "nodus_model_load_lora('" + path + "')");
            adapters_.push_back(name);
        }
    }

    int standardSize() const { return standardSize_; }
    int patchSize() const { return patchSize_; }
    const std::string &subtletyAdapter() const { return subtletyAdapter_; }
    bool hasAdapter(const std::string &name) const {
        return std::find(adapters_.begin(), adapters_.end(), name) != adapters_.end();
    }
    std::string adapterList() const {
        std::string list;
        for (const std::string &name : adapters_) list += (list.empty() ? "" : ", ") + name;
        return list.empty() ? "none" : list;
    }
    std::string schedulerName() const {
        const char *name = nodus_scheduler_kind_name(nodus_scheduler_get_kind(scheduler_.get()));
        return name ? name : "unknown";
    }

    // A nodule painted into `patch` (row-major patchSize^2 pixels in [-1, 1]) inside `mask`
    // (1 = nodule): the masked patch VAE-encoded (posterior mean), guided DiT sampling from
    // torch-compatible noise of `seed`, the latent decoded. Returns the painted patch.
    std::vector<float> paint(const std::vector<double> &patch, const std::vector<float> &mask,
                             const std::vector<std::pair<std::string, float>> &adapters, uint64_t seed, int steps) {
        const int size = patchSize_, latent = latentSize_, channels = latentChannels_;
        const size_t pixels = size_t(size) * size;
        Tensor masked({1, imageChannelsIn_, size, size});
        for (size_t index = 0; index < masked.values.size(); index++) {
            masked.values[index] = float(patch[index % pixels]) * (1 - mask[index % pixels]);
        }
        Tensor mean({1, channels, latent, latent}), logvar({1, channels, latent, latent});
        nodus_tensor image = masked.view(), meanView = mean.view(), logvarView = logvar.view();
        check(nodus_model_encode(vae_.get(), &image, &meanView, &logvarView), "nodus_model_encode");

        // The DiT's extra channels: the mask at latent resolution, then the masked image's latent.
        const int factor = size / latent;
        const size_t cells = size_t(latent) * latent;
        Tensor conditioning({1, 1 + channels, latent, latent});
        for (size_t index = 0; index < size_t(size) * size; index++) {
            if (mask[index] > 0) conditioning.values[(index / size / factor) * latent + (index % size) / factor] = 1;
        }
        for (size_t index = 0; index < channels * cells; index++) {
            conditioning.values[cells + index] = mean.values[index] * scalingFactor_;
        }
        Tensor noise({1, channels, latent, latent});
        nodus_tensor noiseView = noise.view();
        check(nodus_randn(seed, &noiseView), "nodus_randn");  // torch.randn with manual_seed(seed)

        if (adapters.empty()) {
            if (!adapters_.empty()) check(nodus_model_enable_lora(dit_.get(), 0), "nodus_model_enable_lora");
        } else {
            std::vector<const char *> names;
            std::vector<float> weights;
            for (const auto &[name, weight] : adapters) {
                names.push_back(name.c_str());
                weights.push_back(weight);
            }
            check(nodus_model_enable_lora(dit_.get(), 1), "nodus_model_enable_lora");
            check(nodus_model_set_adapters(dit_.get(), names.data(), weights.data(), names.size()),
                  "nodus_model_set_adapters");
        }

        nodus_tensor conditioningView = conditioning.view();
        const int64_t labels[] = {classLabel_};  // with guidance, nodus_sample adds the null class
        nodus_sample_params params;
        nodus_sample_params_init(&params);
        params.steps = steps;
        params.guidance_scale = guidance_;
        params.init_noise = &noiseView;
        params.class_labels = labels;
        params.class_label_count = 1;
        params.conditioning = &conditioningView;
        if (isatty(STDERR_FILENO)) params.progress = printProgress;
        Tensor sampled({1, channels, latent, latent});
        nodus_tensor sampledView = sampled.view();
        check(nodus_sample(dit_.get(), scheduler_.get(), &params, &sampledView), "nodus_sample");

        // vae.decode(latent / scaling_factor).sample
        for (float &value : sampled.values) value /= scalingFactor_;
        Tensor decoded({1, imageChannelsOut_, size, size});
        nodus_tensor latentView = sampled.view(), decodedView = decoded.view();
        check(nodus_model_decode(vae_.get(), &latentView, &decodedView), "nodus_model_decode");
        if (imageChannelsOut_ == 1) return decoded.values;
        std::vector<float> gray(pixels);  // the channels' mean, summed in channel order
        for (size_t index = 0; index < pixels; index++) {
            float sum = 0;
            for (int plane = 0; plane < imageChannelsOut_; plane++) sum += decoded.values[plane * pixels + index];
            gray[index] = sum / float(imageChannelsOut_);
        }
        return gray;
    }

private:
    // Adapter name to file or folder: lora-<name>.safetensors, or a folder lora-<name>/ (PEFT).
    std::map<std::string, std::string> adapterFiles() const {
        std::map<std::string, std::string> result;
        std::unique_ptr<DIR, int (*)(DIR *)> directory(opendir(folder_.c_str()), closedir);
        if (!directory) throw std::runtime_error("cannot list '" + folder_ + "': " + std::strerror(errno));
        const std::string prefix = "lora-", suffix = ".safetensors";
        while (const dirent *entry = readdir(directory.get())) {
            std::string name = entry->d_name;
            if (name.compare(0, prefix.size(), prefix) != 0) continue;
            const std::string path = folder_ + "/" + name;
            std::string adapter = name.substr(prefix.size());
            if (adapter.size() > suffix.size() && adapter.compare(adapter.size() - suffix.size(), suffix.size(), suffix) == 0) {
                adapter.resize(adapter.size() - suffix.size());
            } else {
                struct stat status;
                if (::stat(path.c_str(), &status) != 0 || !S_ISDIR(status.st_mode)) continue;
            }
            result[adapter] = path;
        }
        return result;
    }

    std::string folder_;
    Model dit_, vae_;
    Scheduler scheduler_;
    std::vector<std::string> adapters_;
    int standardSize_ = 960;
    int64_t classLabel_ = 0;
    float guidance_ = 4;
    std::string subtletyAdapter_ = "subtlety";
    float scalingFactor_ = 0.18215f;
    int latentChannels_ = 4, latentSize_ = 0, patchSize_ = 0;
    int imageChannelsIn_ = 1, imageChannelsOut_ = 1;  // the VAE's image channels
};

// ---- Writing the derived DICOM -----------------------------------------------------------------

// Every image this program derives carries it (the CLI's DerivedDICOMWriter writes the same).
const char *const kSyntheticContentComment =
    "SYNTHETIC CONTENT: derived by Nodus; parts of this image may be generated by a diffusion model. "
    "Not for diagnostic use.";

// One reference to the source (SOP Class and Instance), with its purpose (CID 7202).
void addSourceReference(DcmDataset &dataset, const DcmTagKey &sequence, const OFString &classUID,
                        const OFString &instanceUID) {
    DcmItem *item = nullptr, *purpose = nullptr;
    OFCondition status = dataset.findOrCreateSequenceItem(sequence, item, -2);
    if (status.good()) status = item->putAndInsertString(DCM_ReferencedSOPClassUID, classUID.c_str());
    if (status.good()) status = item->putAndInsertString(DCM_ReferencedSOPInstanceUID, instanceUID.c_str());
    if (status.good()) status = item->findOrCreateSequenceItem(DCM_PurposeOfReferenceCodeSequence, purpose, -2);
    if (status.good()) status = purpose->putAndInsertString(DCM_CodeValue, "121322");
    if (status.good()) status = purpose->putAndInsertString(DCM_CodingSchemeDesignator, "DCM");
    if (status.good()) status = purpose->putAndInsertString(DCM_CodeMeaning, "Source image for image processing operation");
    if (status.bad()) throw std::runtime_error(std::string("cannot add the source reference: ") + status.text());
}

// Turns the source's dataset into the derived image's: the patient, study, equipment and
// modality modules stay as they are; the pixels are new, in the source's bit layout and
// photometric interpretation; the attributes of PS3.3 C.7.6.1 say what it is and where it comes
// from, and ImageComments, DerivationDescription and BurnedInAnnotation that it is synthetic.
// Returns the new SOP Instance UID.
std::string makeDerived(DcmDataset &dataset, const Radiograph &image, const std::vector<int32_t> &stored,
                        const std::string &description) {
    OFString classUID, instanceUID;
    dataset.findAndGetOFString(DCM_SOPClassUID, classUID);
    dataset.findAndGetOFString(DCM_SOPInstanceUID, instanceUID);
    if (classUID.empty() || instanceUID.empty()) throw std::runtime_error("the input has no SOP Class or Instance UID");

    // DERIVED\SECONDARY in values 1 and 2; the IOD-specific values from 3 on are kept.
    std::string imageType = "DERIVED\\SECONDARY";
    OFString value;
    for (unsigned long index = 2; dataset.findAndGetOFString(DCM_ImageType, value, index).good(); index++) {
        imageType += "\\" + std::string(value.c_str());
    }
    // Private elements and overlays describe the source's pixels or its vendor's processing;
    // icons, signatures and old references would be wrong for the new image.
    for (unsigned long index = dataset.card(); index-- > 0;) {
        DcmElement *element = dataset.getElement(index);
        const Uint16 group = element->getTag().getGroup();
        if (element->getTag().isPrivate() || (group >= 0x6000 && group <= 0x60ff)) delete dataset.remove(element);
    }
    for (const DcmTagKey &key : {DCM_IconImageSequence, DCM_DigitalSignaturesSequence, DCM_MACParametersSequence,
                                 DCM_SmallestImagePixelValue, DCM_LargestImagePixelValue, DCM_SourceImageSequence,
                                 DCM_ReferencedImageSequence, DCM_DerivationCodeSequence, DCM_NumberOfFrames,
                                 DCM_ContentQualification}) {
        dataset.findAndDeleteElement(key);
    }

    char newInstanceUID[100], newSeriesUID[100];
    dcmGenerateUniqueIdentifier(newInstanceUID, SITE_INSTANCE_UID_ROOT);
    dcmGenerateUniqueIdentifier(newSeriesUID, SITE_SERIES_UID_ROOT);
    OFString date, time;
    const OFDateTime now = OFDateTime::getCurrentDateTime();
    now.getDate().getISOFormattedDate(date, false);
    now.getTime().getISOFormattedTime(time, true, false, false, false);

    const std::pair<DcmTagKey, std::string> attributes[] = {
        {DCM_SOPInstanceUID, newInstanceUID},
        {DCM_SeriesInstanceUID, newSeriesUID},
        {DCM_DerivationDescription, description.substr(0, 1024)},  // LT: at most 1024 characters
        {DCM_ImageComments, kSyntheticContentComment},
        {DCM_SeriesDescription, "Nodus synthetic"},
        {DCM_BurnedInAnnotation, "NO"},
        {DCM_InstanceCreationDate, date.c_str()},
        {DCM_InstanceCreationTime, time.c_str()},
        {DCM_ContentDate, date.c_str()},
        {DCM_ContentTime, time.c_str()},
        {DCM_SeriesDate, date.c_str()},
        {DCM_SeriesTime, time.c_str()},
    };
    OFCondition status = dataset.putAndInsertOFStringArray(DCM_ImageType, imageType.c_str());
    for (const auto &[tag, text] : attributes) {
        if (status.good()) status = dataset.putAndInsertString(tag, text.c_str());
    }
    if (status.bad()) throw std::runtime_error(std::string("cannot set the derived image's attributes: ") + status.text());
    addSourceReference(dataset, DCM_SourceImageSequence, classUID, instanceUID);
    addSourceReference(dataset, DCM_ReferencedImageSequence, classUID, instanceUID);

    if (image.layout.bitsAllocated == 8) {
        std::vector<Uint8> packed(stored.size());
        for (size_t index = 0; index < stored.size(); index++) packed[index] = Uint8(image.layout.pack(stored[index]));
        status = dataset.putAndInsertUint8Array(DCM_PixelData, packed.data(), packed.size());
    } else {
        std::vector<Uint16> packed(stored.size());
        for (size_t index = 0; index < stored.size(); index++) packed[index] = Uint16(image.layout.pack(stored[index]));
        status = dataset.putAndInsertUint16Array(DCM_PixelData, packed.data(), packed.size());
    }
    if (status.bad()) throw std::runtime_error(std::string("cannot store the new pixels: ") + status.text());
    return newInstanceUID;
}

// The whole file as Explicit VR Little Endian bytes, the meta header updated to the new SOP
// Instance UID. Encoding to memory lets the caller write with checked POSIX calls (DCMTK 3.6.7's
// saveFile does not report a failed fclose, so a full disk could pass unnoticed).
std::vector<unsigned char> encode(DcmFileFormat &file) {
    std::vector<unsigned char> bytes, chunk(1 << 20);
    DcmOutputBufferStream stream(chunk.data(), chunk.size());
    file.transferInit();
    OFCondition status = EC_Normal;
    bool written = false;
    while (true) {
        if (!written) {
            status = file.write(stream, EXS_LittleEndianExplicit, EET_ExplicitLength, nullptr, EGL_recalcGL,
                                EPD_noChange, 0, 0, 0, EWM_updateMeta);
            if (status == EC_Normal) {
                written = true;
                stream.flush();
            } else if (status != EC_StreamNotifyClient) {
                break;  // a real error; the buffer was full is EC_StreamNotifyClient
            }
        }
        void *data = nullptr;
        offile_off_t length = 0;
        stream.flushBuffer(data, length);
        bytes.insert(bytes.end(), static_cast<unsigned char *>(data), static_cast<unsigned char *>(data) + length);
        if (written && stream.isFlushed()) break;
    }
    file.transferEnd();
    if (!written) throw std::runtime_error(std::string("encoding the DICOM failed: ") + status.text());
    return bytes;
}

// A temporary file beside the destination, removed unless commit() renames it into place: a
// reader (a PACS import folder, a watcher) never sees a half-written output.
class AtomicFile {
public:
    explicit AtomicFile(const std::string &path) : path_(path) {
        const size_t slash = path.rfind('/');
        const std::string folder = slash == std::string::npos ? "." : path.substr(0, slash);
        const std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
        temporary_ = folder + "/." + name + ".partial-XXXXXX";
        descriptor_ = mkstemp(temporary_.data());
        if (descriptor_ < 0) {
            const int code = errno;
            temporary_.clear();
            throw std::runtime_error("cannot write '" + path + "': " +
                                     (code == ENOENT ? "its folder does not exist" : std::strerror(code)));
        }
        const mode_t mask = umask(0);  // mkstemp makes the file 0600; give it a plain create's mode
        umask(mask);
        fchmod(descriptor_, 0666 & ~mask);
    }
    AtomicFile(const AtomicFile &) = delete;
    AtomicFile &operator=(const AtomicFile &) = delete;
    ~AtomicFile() {
        if (descriptor_ >= 0) close(descriptor_);
        if (!temporary_.empty()) unlink(temporary_.c_str());
    }

    void write(const std::vector<unsigned char> &bytes) {
        for (size_t done = 0; done < bytes.size();) {
            const ssize_t count = ::write(descriptor_, bytes.data() + done, bytes.size() - done);
            if (count < 0 && errno == EINTR) continue;
            if (count < 0) fail();
            done += size_t(count);
        }
    }

    // fsync, close (a deferred write error counts too), then rename over the destination.
    void commit() {
        if (fsync(descriptor_) != 0) fail();
        const int descriptor = descriptor_;
        descriptor_ = -1;
        if (close(descriptor) != 0) fail();
        if (rename(temporary_.c_str(), path_.c_str()) != 0) fail();
        temporary_.clear();
    }

private:
    [[noreturn]] void fail() const { throw std::runtime_error("cannot write '" + path_ + "': " + std::strerror(errno)); }

    std::string path_, temporary_;
    int descriptor_ = -1;
};

// ---- The command line --------------------------------------------------------------------------

const char *const kSynopsis =
    "usage: pacs_insert_nodule MODEL_DIR INPUT.dcm OUTPUT.dcm --center X,Y --diameter D\n"
    "                          [--lora NAME:WEIGHT]... [--subtlety S] [--seed S] [--steps N]\n";
const char *const kDetails =
    "\n"
    "Inserts a synthetic nodule into a grayscale DICOM radiograph with a nodule model folder\n"
    "(models/nodule-demo) and writes a derived DICOM marked as synthetic content.\n"
    "  --center X,Y       the nodule's centre: column, row in pixels of the input (required)\n"
    "  --diameter D       its diameter in pixels of the input (required)\n"
    "  --lora NAME:WEIGHT a characteristic LoRA of the folder (lora-NAME) and its weight; repeatable\n"
    "  --subtlety S       the subtlety slider: the folder's subtlety LoRA at weight 2^(2+S)\n"
    "  --seed S           noise seed (default 0)\n"
    "  --steps N          sampler steps (default 50)\n"
    "Exit codes: 0 written, 1 failed (nothing written), 2 usage error.\n";

struct Options {
    std::string model, input, output;
    double centreX = 0, centreY = 0, diameter = 0;
    std::vector<std::pair<std::string, float>> adapters;
    std::optional<double> subtlety;
    uint64_t seed = 0;
    int steps = 50;
};

double parseNumber(const std::string &text, const std::string &what) {
    char *end = nullptr;
    const double value = std::strtod(text.c_str(), &end);
    if (text.empty() || *end != '\0' || !std::isfinite(value)) throw UsageError(what + " must be a number, got '" + text + "'");
    return value;
}

Options parseOptions(int argc, char **argv) {
    Options options;
    std::vector<std::string> positionals;
    bool hasCentre = false, hasDiameter = false;
    for (int index = 1; index < argc; index++) {
        const std::string argument = argv[index];
        if (argument.rfind("--", 0) != 0) {
            positionals.push_back(argument);
            continue;
        }
        if (index + 1 >= argc) throw UsageError(argument + " needs a value");
        const std::string value = argv[++index];
        if (argument == "--center") {
            const size_t comma = value.find(',');
            if (comma == std::string::npos) throw UsageError("--center must be X,Y (column, row), got '" + value + "'");
            options.centreX = parseNumber(value.substr(0, comma), "--center's X");
            options.centreY = parseNumber(value.substr(comma + 1), "--center's Y");
            hasCentre = true;
        } else if (argument == "--diameter") {
            options.diameter = parseNumber(value, "--diameter");
            if (options.diameter <= 0) throw UsageError("--diameter must be positive, got '" + value + "'");
            hasDiameter = true;
        } else if (argument == "--lora") {
            const size_t colon = value.rfind(':');
            if (colon == std::string::npos || colon == 0) {
                throw UsageError("--lora must be NAME:WEIGHT (a characteristic of the model folder), got '" + value + "'");
            }
            const std::string name = value.substr(0, colon);
            for (const auto &adapter : options.adapters) {
                if (adapter.first == name) throw UsageError("--lora " + name + " is given twice");
            }
            options.adapters.emplace_back(name, float(parseNumber(value.substr(colon + 1), "--lora's weight")));
        } else if (argument == "--subtlety") {
            options.subtlety = parseNumber(value, "--subtlety");
        } else if (argument == "--seed") {
            char *end = nullptr;
            options.seed = std::strtoull(value.c_str(), &end, 10);
            if (value.empty() || value[0] == '-' || *end != '\0') {
                throw UsageError("--seed must be a non-negative integer, got '" + value + "'");
            }
        } else if (argument == "--steps") {
            const double steps = parseNumber(value, "--steps");
            if (steps < 1 || steps > 10000 || steps != std::floor(steps)) {
                throw UsageError("--steps must be an integer in 1 ... 10000, got '" + value + "'");
            }
            options.steps = int(steps);
        } else {
            throw UsageError("unknown option " + argument);
        }
    }
    if (positionals.size() != 3) throw UsageError("give MODEL_DIR, INPUT.dcm and OUTPUT.dcm");
    if (!hasCentre || !hasDiameter) throw UsageError("--center and --diameter are required");
    options.model = positionals[0];
    options.input = positionals[1];
    options.output = positionals[2];
    return options;
}

int run(const Options &options) {
    // Refuse to replace the source: a derived image goes beside it.
    struct stat source, destination;
    if (::stat(options.input.c_str(), &source) == 0 && ::stat(options.output.c_str(), &destination) == 0 &&
        source.st_dev == destination.st_dev && source.st_ino == destination.st_ino) {
        throw UsageError("OUTPUT '" + options.output + "' is the input; write the derived image to a new file");
    }

    // 1. The radiograph, and its pixels as the model's [-1, 1].
    prepareDCMTK();
    DcmFileFormat file;
    loadDICOM(options.input, file);
    const Radiograph image = readRadiograph(options.input, *file.getDataset());
    const IntensityMapping mapping(image, options.input);
    std::vector<double> values(image.stored.size());  // modality values
    for (size_t index = 0; index < values.size(); index++) values[index] = image.value(image.stored[index]);

    // 2. The model, the patch and the nodule's disk in it.
    NoduleModel model(options.model);
    const PatchPlacement placement(image.width, image.height, model.standardSize(), model.patchSize(),
                                   options.centreX, options.centreY);
    const std::vector<float> patchMask = placement.diskInPatch(options.diameter);
    const std::vector<bool> imageMask = placement.diskInImage(options.diameter), core = placement.region(true);
    bool inside = false, inPatch = std::find(patchMask.begin(), patchMask.end(), 1.0f) != patchMask.end();
    for (size_t index = 0; index < imageMask.size(); index++) {
        if (!imageMask[index]) continue;
        inside = true;
        if (!core[index]) {
            throw UsageError("the nodule reaches beyond the model's " + std::to_string(model.patchSize()) +
                             "-pixel patch (at the standard size " + std::to_string(model.standardSize()) +
                             ", inside its feathered seam): use a smaller diameter");
        }
    }
    if (!inside || !inPatch) throw UsageError("the nodule mask is empty: use a larger diameter");

    // The adapters: characteristics by name, and the subtlety slider's at 2^(2 + S).
    std::vector<std::pair<std::string, float>> adapters = options.adapters;
    if (options.subtlety) {
        for (const auto &adapter : adapters) {
            if (adapter.first == model.subtletyAdapter()) {
                throw UsageError("give the '" + model.subtletyAdapter() + "' adapter a weight or a subtlety level, not both");
            }
        }
        adapters.emplace_back(model.subtletyAdapter(), float(std::pow(2.0, 2 + *options.subtlety)));
    }
    for (const auto &adapter : adapters) {
        if (!model.hasAdapter(adapter.first)) {
            throw UsageError("'" + options.model + "' has no LoRA for '" + adapter.first + "'; it has " + model.adapterList());
        }
    }

    // 3. Paint: the patch in the model's pixels, clipped to [-1, 1], through VAE and DiT.
    std::vector<double> pixels(values.size());
    for (size_t index = 0; index < values.size(); index++) pixels[index] = mapping.pixel(values[index]);
    std::vector<double> patch = placement.cut(pixels);
    for (double &pixel : patch) pixel = std::clamp(pixel, -1.0, 1.0);
    const std::vector<float> painted = model.paint(patch, patchMask, adapters, options.seed, options.steps);

    // 4. Back to modality values, blended in; outside the patch the stored values are the input's.
    std::vector<double> paintedValues(painted.size());
    for (size_t index = 0; index < painted.size(); index++) {
        paintedValues[index] = mapping.value(std::clamp(double(painted[index]), -1.0, 1.0));
    }
    const std::vector<double> pasted = placement.paste(paintedValues, values);
    const std::vector<bool> changed = placement.region(false);
    std::vector<int32_t> stored = image.stored;
    for (size_t index = 0; index < stored.size(); index++) {
        if (changed[index]) stored[index] = image.storedValue(float(pasted[index]));
    }

    // 5. The derived DICOM, written atomically.
    std::string description = std::string("Nodus ") + nodus_version() +
        " insert_nodule (pacs_insert_nodule): a synthetic nodule at (" + format("%g", options.centreX) + ", " +
        format("%g", options.centreY) + "), diameter " + format("%g", options.diameter) + ", seed " +
        std::to_string(options.seed) + ", " + std::to_string(options.steps) + " " + model.schedulerName() +
        " steps, adapters ";
    for (size_t index = 0; index < adapters.size(); index++) {
        description += (index ? ", " : "") + adapters[index].first + " " + format("%g", adapters[index].second);
    }
    if (adapters.empty()) description += "none";
    const std::string uid = makeDerived(*file.getDataset(), image, stored, description);
    AtomicFile output(options.output);
    output.write(encode(file));
    output.commit();
    std::cout << "wrote " << options.output << " (SOP Instance UID " << uid << ")\n";
    return 0;
}

}  // namespace

int main(int argc, char **argv) {
    for (int index = 1; index < argc; index++) {
        if (std::strcmp(argv[index], "--help") == 0 || std::strcmp(argv[index], "-h") == 0) {
            std::cout << kSynopsis << kDetails;
            return 0;
        }
    }
    // The header and the library must agree on major and minor version (X.Y of X.Y.Z).
    if (nodus_version_number() / 1000 != NODUS_VERSION_NUMBER / 1000) {
        std::cerr << "pacs_insert_nodule: built against Nodus " << NODUS_VERSION_STRING << " but loaded "
                  << nodus_version() << "\n";
        return 1;
    }
    try {
        return run(parseOptions(argc, argv));
    } catch (const UsageError &error) {
        std::cerr << "pacs_insert_nodule: " << error.what() << "\n" << kSynopsis;
        return 2;
    } catch (const std::exception &error) {
        std::cerr << "pacs_insert_nodule: " << error.what() << "\n";
        return 1;
    }
}
