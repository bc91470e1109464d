// The name of a parameterised test case: the `name` field every case table of the tests has,
// so that a failure names its row (`Cases/XdpLbTest.Packet/udp_to_vip`).
#pragma once

#include <gtest/gtest.h>

#include <string>

namespace sluice::test {

struct ParamName {
  template <class Case>
  std::string operator()(const ::testing::TestParamInfo<Case>& info) const {
    return info.param.name;
  }
};

}  // namespace sluice::test
