# registry-v1 as a container image: the binary and the few files it needs
# at run time on an empty base. No shell, no package manager, no compiler.
#
# With internet access, from the official rust image:
#     docker build -t registry-v1 .
# Without (no base image to pull), from this machine's toolchain and files:
#     bash docker/build.sh registry-v1
# which builds the binary here, assembles the same tree with the same
# script, and builds the last stage below, as it is, on that tree.
#
# Run it as the old `registry` image ran:
#     docker run -d -p 5000:5000 -v /opt/data/registry:/tmp/registry registry-v1

FROM rust:1-bookworm AS rootfs
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin registry-v1 \
 && bash docker/rootfs.sh target/release/registry-v1 config_sample.yml /rootfs

# The image. docker/build.sh builds from here on, with a `rootfs` stage of
# its own holding the prepared tree: keep every line below valid for both.
FROM scratch
COPY --from=rootfs /rootfs/tree/ /
COPY --from=rootfs --chown=65532:65532 /rootfs/storage/ /tmp/registry/
# The configuration, flavor and default storage of the old image.
ENV DOCKER_REGISTRY_CONFIG=/docker-registry/config/config_sample.yml \
    SETTINGS_FLAVOR=dev
USER 65532:65532
EXPOSE 5000
VOLUME /tmp/registry
# SIGTERM lets requests in flight finish (docker stop waits 10 s before it
# kills: `--stop-timeout`/`-t` give a long upload more).
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["/usr/local/bin/registry-v1", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/registry-v1"]
CMD ["serve"]
