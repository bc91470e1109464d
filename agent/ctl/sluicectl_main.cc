// sluicectl: the sluice CLI. All of it lives in the sluice_ctl library, where the unit tests
// call it too (ctl.cc, commands.h).
#include <sluice/ctl/ctl.h>

int main(int argc, char** argv) { return sluice::ctl_main(argc, argv); }
