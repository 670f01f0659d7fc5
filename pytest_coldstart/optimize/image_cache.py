"""The ``image`` cache policy (optimization ``image_cached``): the container image is already on the node.

Every other cache is as cold as under ``cold`` (a fresh ``VLLM_CACHE_ROOT``, an empty HF hub cache, the
model's pages evicted). The image is pulled by an unmeasured step before the start, as ``compile_cache``
populates its cache with an unmeasured start; the measured start finds it local, so the launcher skips the
pull and ``image_pull`` is "not observed" (never 0). The result says which cache was warm: ``cache.warm``
lists ``image``, ``cache.image_cache`` is ``warm`` and ``cache.image_prepull`` says what was pulled.

Only a launcher that runs an image has an image cache: under any other the policy is refused (the plugin
skips such a case with the reason) rather than run as a baseline under another name.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from pytest_coldstart.launch.docker import IMAGE_CACHE_KEY, IMAGE_WARM, describe_pull_error, docker_client, split_image
from pytest_coldstart.launch.docker_ground import DEFAULT_IMAGE, default_docker_host
from pytest_coldstart.model.case import CachePolicy
from pytest_coldstart.model.errors import ConfigError
from pytest_coldstart.optimize.base import CachePlan, CacheStrategy, Populate, StartContext, WeightSource
from pytest_coldstart.optimize.caches import STATE_WARM, ColdCache

#: Launchers that run a container image (the only ones with an image cache to warm).
IMAGE_LAUNCHERS = ("docker",)
WARM_NAME = "image"  # in the result's cache.warm list


class ImageCache(CacheStrategy):
    policy = CachePolicy.IMAGE

    def refuses(self, launcher: str) -> str | None:
        if launcher in IMAGE_LAUNCHERS:
            return None
        return (f"cache policy 'image' (image_cached) needs a launcher that runs a container image "
                f"({', '.join(IMAGE_LAUNCHERS)}); --launcher {launcher} has no image cache to warm, and running it "
                "anyway would be a baseline under another name. Run it with --launcher docker")

    def plan(self, ctx: StartContext, source: WeightSource) -> CachePlan:
        reason = self.refuses(ctx.case.launcher)
        if reason is not None:
            raise ConfigError(f"{ctx.case.id}: {reason}")
        cold = ColdCache().plan(ctx, source)
        hygiene = dataclasses.replace(cold.hygiene, also_warm=(WARM_NAME,),
                                      kept=(*cold.hygiene.kept, "container image (pulled before the start, unmeasured)"))
        record = {**cold.record, "policy": str(self.policy), "image_cache": "warm"}
        return dataclasses.replace(cold, policy=self.policy, hygiene=hygiene, record=record,
                                   launcher_options={IMAGE_CACHE_KEY: IMAGE_WARM})

    def ready(self, ctx: StartContext, plan: CachePlan, populate: Populate) -> CachePlan:
        """Pull the image now, unmeasured: the measured start finds it local."""
        del populate
        import docker.errors

        options = ctx.launcher_options
        image = options.get("docker_image") or DEFAULT_IMAGE
        client = docker_client(options.get("docker_host") or default_docker_host())
        ctx.say(f"pulling {image} before the start (image_cached; not measured)")
        started = ctx.clock.monotonic_s()
        repo, tag = split_image(image)
        try:
            pulled = client.images.pull(repo, tag=tag)
        except docker.errors.DockerException as exc:
            raise describe_pull_error(image, exc) from None
        finally:
            client.close()
        digests = pulled.attrs.get("RepoDigests") or []
        prepull: dict[str, Any] = {"image": image, "image_id": pulled.id,
                                   "image_digest": digests[0].rpartition("@")[2] if digests else None,
                                   "pull_s": round(ctx.clock.monotonic_s() - started, 3)}
        return dataclasses.replace(plan, state=STATE_WARM, record={**plan.record, "image_prepull": prepull})
