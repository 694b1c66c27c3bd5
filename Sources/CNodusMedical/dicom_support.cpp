#include "dicom_support.h"
#include "atomic_file.h"

#include <dcmtk/dcmdata/dcrledrg.h>
#include <dcmtk/dcmjpeg/djdecode.h>
#include <dcmtk/dcmjpls/djdecode.h>
#include <dcmtk/oflog/oflog.h>

#include <mutex>

namespace {

// DCMTK's decoders are process-wide registrations; register them once. Its
// logger would print its own warnings on stderr beside ours: keep it to errors
// that we do not report ourselves.
void prepareDCMTK() {
    static std::once_flag once;
    std::call_once(once, [] {
        OFLog::configure(OFLogger::FATAL_LOG_LEVEL);
        DcmRLEDecoderRegistration::registerCodecs();
        DJDecoderRegistration::registerCodecs();
        DJLSDecoderRegistration::registerCodecs();
    });
}

}  // namespace

int medical_load_dicom(const char *path, DcmFileFormat &file, DcmDataset *&dataset, char *error, size_t errorSize) {
    prepareDCMTK();
    OFCondition status = file.loadFile(path);
    if (status.bad()) {
        return medical_fail(error, errorSize, "cannot read '%s' as DICOM: %s", path, status.text());
    }
    dataset = file.getDataset();
    if (!dataset || !dataset->tagExists(DCM_PixelData)) {
        return medical_fail(error, errorSize, "'%s' has no Pixel Data (not an image)", path);
    }
    const E_TransferSyntax original = dataset->getOriginalXfer();
    DcmXfer syntax(original);
    if (syntax.isEncapsulated()) {
        status = dataset->chooseRepresentation(EXS_LittleEndianExplicit, nullptr);
        if (status.bad() || !dataset->canWriteXfer(EXS_LittleEndianExplicit)) {
            return medical_fail(error, errorSize,
                                "'%s' is compressed as %s (%s), which DCMTK cannot decode; "
                                "decompress it first (for example with gdcmconv --raw)",
                                path, syntax.getXferName(), syntax.getXferID());
        }
    }
    return 0;
}
