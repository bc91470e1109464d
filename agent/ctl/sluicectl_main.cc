// sluicectl: the sluice CLI. All logic lives in the sluice_agent library (ctl.cc).
#include <sluice/ctl/ctl.h>

int main(int argc, char** argv) { return sluice::ctl_main(argc, argv); }
