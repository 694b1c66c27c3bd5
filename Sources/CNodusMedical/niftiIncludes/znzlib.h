/* Debian installs niftilib's headers under <nifti/>, and nifti1_io.h includes
 * <znzlib.h> by its bare name: this forwards that one include. */
#include <nifti/znzlib.h>
