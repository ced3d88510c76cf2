# Sourced by the install scripts (not run by .ci/run, which runs
# install-*.sh): Debian packages installed with no service started.

# apt_install PACKAGE...: installs them without their recommends, after
# refreshing the package lists when they are older than a day; while it
# runs, a policy-rc.d keeps the packages' services from starting (there is
# no init system here, and the tests start their own servers).
apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -newermt '-1 day' 2>/dev/null | head -1)" ]; then
    apt-get -o DPkg::Lock::Timeout=600 update -qq
  fi
  local policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    policy=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\nexit 101\n' > "$policy"
    chmod +x "$policy"
  fi
  local status=0
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "$@" >/dev/null || status=$?
  [ -z "$policy" ] || rm -f "$policy"
  return "$status"
}
