#!/usr/bin/env bash
# Dynamic negative sampling for the causal model on TikTok (docs/RESULTS.md "TikTok: dynamic
# negative sampling"): each triple's negative is the hardest of M uniform draws by the current
# score (train.negative_candidates).
#
#   runs/tiktok_causal_s<seed>        configs/tiktok_causal.yaml (skipped when present)
#   runs/tiktok_causal_dns4_s<seed>   the hardest of 4 candidates
#   runs/tiktok_causal_dns16_s<seed>  the hardest of 16 candidates
#   runs/tiktok_causal_dns16_warm5_s<seed>, ..._warm10_s<seed>
#                                     the hardest of 16 in the first 5 / 10 epochs, uniform after
#                                     (second round: VARIANTS="dns16_warm5 dns16_warm10")
#   runs/tiktok_causal_dns16_warm3_s<seed>, ..._dns64_warm5_s<seed>
#                                     16 for 3 epochs / 64 for 5 epochs (third round)
#   runs/tiktok_causal_dns16_warm5_drop30_s<seed>, ..._reg1e3_s<seed>
#                                     the warm start with edge dropout (edge_keep 0.7) / a tenfold
#                                     L2 weight (fourth round)
#   runs/tiktok_causal_dns16_warm5_nocross_s<seed>, ..._nofd_s<seed>
#                                     the warm start without the front-door's cross-sample term /
#                                     without the front-door (fifth round)
#   runs/tiktok_causal_dns16_warm5_fdcent_s<seed>
#                                     the warm start, the cross-sample term over the front-door's own
#                                     item centroids instead of the coarse codes (sixth round)
#   runs/tiktok_causal_dns16_warm5_then2_s<seed>, ..._then4_s<seed>
#                                     the warm start, then the hardest of 2 / 4 (not one uniform
#                                     negative) for the rest of the run (seventh round)
#   runs/tiktok_causal_dns16_warm5_then2_pop020_s<seed>
#                                     pools of 2 after the warm start, ranked with
#                                     eval.popularity_offset -0.2 (eighth round)
#   runs/tiktok_causal_dns16_warm5_dim256_s<seed>, ..._lr1e3_s<seed>
#                                     the warm start with 256-wide rows / learning rate 1e-3
#                                     (ninth round)
#   runs/tiktok_causal_dns16_warm5_itemc_s<seed>, ..._keep90_s<seed>
#                                     the warm start, pruning each user's edges by their score
#                                     against the item's mean score / keeping 90% of each user's
#                                     edges instead of 80% (tenth round)
#   runs/tiktok_causal_dns16_warm5_l3_s<seed>, ..._b4096_s<seed>
#                                     the warm start with three propagation layers / batch 4096 at
#                                     learning rate 1e-3 (twelfth round)
#   runs/tiktok_causal_dns16_warm5_dwd1e3_s<seed>, ..._dwd1e2_s<seed>
#                                     the warm start with weight decay 1e-3 / 1e-2 on the dense
#                                     (non-table) parameters (thirteenth round)
#   runs/tiktok_causal_dns16_warm5_npop025_s<seed>, ..._npop050_s<seed>
#                                     the warm start with every negative drawn by (1 + n_i)^0.25 /
#                                     (1 + n_i)^0.5 instead of uniformly (fourteenth round)
#   runs/tiktok_causal_dns16_warm5_then_npop025_s<seed>, ..._then_npop050_s<seed>
#                                     the warm start's uniform pools, then single negatives drawn
#                                     by (1 + n_i)^0.25 / (1 + n_i)^0.5 (fifteenth round)
#   runs/tiktok_causal_dns16_warm5_norm055_s<seed>, ..._norm060_s<seed>
#                                     the warm start, the backbone propagating with D^-r A D^-(1-r),
#                                     r = 0.55 / 0.6 instead of 0.5 (sixteenth round)
#   runs/tiktok_causal_dns16_warm5_refit5_s<seed>
#                                     the warm start with a k-means re-fit of the codebook every 5
#                                     epochs from epoch 10 (seventeenth round)
#   runs/tiktok_causal_dns16_warm5_then2_norm060_s<seed>, ..._norm060_pop020_s<seed>
#                                     r = 0.6 with pools of 2 after the warm start / with ranking by
#                                     eval.popularity_offset -0.2 (eighteenth round)
#   runs/tiktok_causal_dns16_warm5_norm065_pop020_s<seed>, ..._norm070_pop020_s<seed>
#                                     the eighteenth round's adoption with r = 0.65 / 0.7 instead
#                                     of 0.6 (nineteenth round)
#   runs/tiktok_causal_hid128_s<seed>, ..._hid256_s<seed>
#                                     the configuration (warm start, r = 0.6 and the offset
#                                     already in it) with 128- / 256-wide projection and denoiser
#                                     MLPs instead of 64 (twentieth round)
#   runs/tiktok_causal_keep70_s<seed>, ..._keep60_s<seed>
#                                     the configuration keeping 70% / 60% of each user's edges in
#                                     the causal subgraph instead of 80% (twenty-first round)
#   runs/tiktok_causal_mask60_s<seed>, ..._diffw03_s<seed>, ..._noise10_s<seed>
#                                     the configuration with the diffusion's own channel masked in
#                                     60% of its training draws (0.3) / its loss weight 0.3 (0.1) /
#                                     its noise scale 1.0 (0.1) (twenty-second round, SEEDS="16 17
#                                     18 19")
#   runs/tiktok_causal_mask60_noise10_s<seed>, ..._noise30_s<seed>
#                                     the configuration with both of the twenty-second round's
#                                     leads (mask 0.6 and noise scale 1.0) / noise scale 3.0
#                                     (twenty-third round, SEEDS="16 17 18 19")
#   runs/tiktok_causal_noise100_s<seed>
#                                     noise scale 10 (twenty-fourth round, SEEDS="16 17 18 19 20 21")
#   runs/tiktok_causal_lr2e3_s<seed>, ..._then2_s<seed>
#                                     the configuration with learning rate 2e-3 (1.5e-3) / with the
#                                     hardest of 2 uniform draws after the warm start instead of one
#                                     draw (twenty-sixth round, SEEDS="16 17 18 19 20 21")
#   runs/tiktok_causal_wa90_s<seed>, ..._wa97_s<seed>
#                                     ranking with an average of the weights, decay 0.9 / 0.97
#                                     (twenty-eighth round, SEEDS="16 17 18 19 20 21")
#   runs/tiktok_causal_center_s<seed>
#                                     the codebook's first level on ẑ minus its running mean
#                                     (twenty-ninth round, SEEDS="16 17 18 19 20 21")
#   runs/tiktok_causal_fdl3_s<seed>, ..._refresh2_s<seed>, ..._unweighted_s<seed>
#                                     the front-door's mediator over 3 layers (2), the causal
#                                     subgraph refreshed every 2 epochs (5), its kept edges at weight 1
#                                     (their scores) (thirtieth round, SEEDS="16 17 18 19 20 21")
#   runs/tiktok_causal_center0_s<seed>
#                                     the centred codebook on each step's own mean of ẑ
#                                     (center_decay 0; thirty-first round, SEEDS="16 17 18 19 20 21")
#   runs/tiktok_causal_topo_bpr_s<seed>
#                                     the edge scorer trained by a BPR topology loss instead of
#                                     BCE (thirty-second round, SEEDS="16 17 18 19 20 21")
#   runs/tiktok_causal_cl_mediator_s<seed>
#                                     the contrastive term's second view the front-door's mediator
#                                     instead of the content (thirty-third round, SEEDS="16 ... 21")
#   runs/tiktok_causal_cl_mediator_t1_s<seed>, ..._cl_mediator_w01_s<seed>
#                                     the mediator view at temperature 1 and weight 0.25 (little
#                                     uniformity, the same pull), and at weight 0.01 (a diagnostic,
#                                     thirty-fourth round, SEEDS="16 17")
#   runs/tiktok_causal_init_n10_s<seed>, ..._init_n03_s<seed>
#                                     ID tables from N(0, 0.1^2) / N(0, 0.03^2) instead of Xavier
#                                     (thirty-fifth round, SEEDS="16 17 18 19 20 21")
#   runs/tiktok_causal_steps10_s<seed>
#                                     the diffusion with 10 steps (5) (thirty-ninth round,
#                                     SEEDS="16 17 18 19 20 21")
#   runs/tiktok_causal_detach_content_s<seed>
#                                     the content path out of the ranking loss (thirty-eighth round,
#                                     SEEDS="16 17 18 19 20 21")
#   runs/tiktok_causal_init_n005_s<seed>, ..._init_n0015_s<seed>
#                                     ID tables from N(0, 0.005^2) / N(0, 0.0015^2), below Xavier's
#                                     scale (thirty-seventh round, SEEDS="16 17 18 19 20 21")
#   runs/tiktok_causal_cl10_s<seed>, ..._cl025_s<seed>
#                                     the content contrast at weight 0.1 / 0.025 (0.05)
#                                     (thirty-sixth round, SEEDS="16 17 18 19 20 21")
#   runs/tiktok_causal_gate03_s<seed>, ..._ortho0_s<seed>
#                                     the back-door and front-door gates starting at 0.3 (0) / the
#                                     diffusion's orthogonality penalty off (weight 0.01)
#                                     (fortieth round, SEEDS="16 17 18 19 20 21")
#   runs/tiktok_causal_fdwarm5_s<seed>, ..._fdwarm20_s<seed>
#                                     the causal subgraph first rebuilt at epoch 5 / 20 (10)
#                                     (forty-first round, SEEDS="16 17 18 19 20 21")
#   runs/tiktok_causal_ortho10_s<seed>, ..._diffw003_s<seed>
#                                     the orthogonality penalty at weight 0.1 (0.01) / the diffusion
#                                     loss at weight 0.03 (0.1) (forty-second round, SEEDS="16 ... 21")
#   runs/tiktok_causal_pdrop10_s<seed>, ..._pdrop30_s<seed>
#                                     dropout 0.1 / 0.3 inside the projection MLPs (0)
#                                     (forty-third round, SEEDS="16 17 18 19 20 21")
#   runs/tiktok_causal_cl_t04_s<seed>
#                                     the content contrast at temperature 0.4 (0.2)
#                                     (forty-fourth round, SEEDS="16 17 18 19 20 21")
#   runs/tiktok_causal_dlr5e4_s<seed>, ..._dlr45e4_s<seed>
#                                     the dense parameters at learning rate 5e-4 / 4.5e-3, the
#                                     tables at 1.5e-3 (forty-fifth round, SEEDS="16 17 18 19 20 21")
#   runs/tiktok_causal_tlr1e3_s<seed>, ..._tlr2e3_s<seed>
#                                     the tables at learning rate 1e-3 / 2e-3, the dense parameters
#                                     at 1.5e-3 (forty-sixth round, SEEDS="16 17 18 19 20 21")
#
#   JOBS=2 EXTRA_ARGS="--scaling.threads_per_worker=1 --logging.progress=false" \
#       bash experiments/tiktok_dns_probe.sh
#
# Finished runs are skipped; see experiments/lib.sh for RUNS, JOBS, SEEDS (default here "16 17":
# a probe on two fresh seeds, since seed-0 leads have not survived fresh seeds), LOGS, EXTRA_ARGS.
set -euo pipefail
cd "$(dirname "$0")/.."
SEEDS=${SEEDS:-16 17}
source experiments/lib.sh
VARIANTS=${VARIANTS-dns4 dns16}

override() {
  case $1 in
    dns4) echo "--train.negative_candidates=4" ;;
    dns16) echo "--train.negative_candidates=16" ;;
    dns16_warm5) echo "--train.negative_candidates=16 --train.negative_candidate_epochs=5" ;;
    dns16_warm10) echo "--train.negative_candidates=16 --train.negative_candidate_epochs=10" ;;
    dns16_warm3) echo "--train.negative_candidates=16 --train.negative_candidate_epochs=3" ;;
    dns64_warm5) echo "--train.negative_candidates=64 --train.negative_candidate_epochs=5" ;;
    dns16_warm5_drop30) echo "--train.negative_candidates=16 --train.negative_candidate_epochs=5 --model.causal.backbone.edge_keep=0.7" ;;
    dns16_warm5_reg1e3) echo "--train.negative_candidates=16 --train.negative_candidate_epochs=5 --model.reg_weight=1e-3" ;;
    dns16_warm5_nocross) echo "--train.negative_candidates=16 --train.negative_candidate_epochs=5 --model.causal.frontdoor.cross_sample=false" ;;
    dns16_warm5_nofd) echo "--train.negative_candidates=16 --train.negative_candidate_epochs=5 --model.causal.frontdoor.enabled=false" ;;
    dns16_warm5_fdcent) echo "--train.negative_candidates=16 --train.negative_candidate_epochs=5 --model.causal.frontdoor.dictionary=centroids" ;;
    dns16_warm5_then2) echo "--train.negative_candidates=16 --train.negative_candidate_epochs=5 --train.negative_candidates_after=2" ;;
    dns16_warm5_then4) echo "--train.negative_candidates=16 --train.negative_candidate_epochs=5 --train.negative_candidates_after=4" ;;
    dns16_warm5_then2_pop020) echo "--train.negative_candidates=16 --train.negative_candidate_epochs=5 --train.negative_candidates_after=2 --eval.popularity_offset=-0.2" ;;
    dns16_warm5_dim256) echo "--train.negative_candidates=16 --train.negative_candidate_epochs=5 --model.embedding_dim=256" ;;
    dns16_warm5_lr1e3) echo "--train.negative_candidates=16 --train.negative_candidate_epochs=5 --train.learning_rate=1e-3" ;;
    dns16_warm5_itemc) echo "--train.negative_candidates=16 --train.negative_candidate_epochs=5 --model.causal.frontdoor.prune_rank=item_centred" ;;
    dns16_warm5_keep90) echo "--train.negative_candidates=16 --train.negative_candidate_epochs=5 --model.causal.frontdoor.keep_ratio=0.9" ;;
    dns16_warm5_l3) echo "--train.negative_candidates=16 --train.negative_candidate_epochs=5 --model.num_layers=3" ;;
    dns16_warm5_b4096) echo "--train.negative_candidates=16 --train.negative_candidate_epochs=5 --train.batch_size=4096 --train.learning_rate=1e-3" ;;
    dns16_warm5_dwd1e3) echo "--train.negative_candidates=16 --train.negative_candidate_epochs=5 --train.dense_weight_decay=1e-3" ;;
    dns16_warm5_dwd1e2) echo "--train.negative_candidates=16 --train.negative_candidate_epochs=5 --train.dense_weight_decay=1e-2" ;;
    dns16_warm5_npop025) echo "--train.negative_candidates=16 --train.negative_candidate_epochs=5 --train.negative_popularity_power=0.25" ;;
    dns16_warm5_npop050) echo "--train.negative_candidates=16 --train.negative_candidate_epochs=5 --train.negative_popularity_power=0.5" ;;
    dns16_warm5_then_npop025) echo "--train.negative_candidates=16 --train.negative_candidate_epochs=5 --train.negative_popularity_power=0.25 --train.negative_popularity_from_epoch=5" ;;
    dns16_warm5_then_npop050) echo "--train.negative_candidates=16 --train.negative_candidate_epochs=5 --train.negative_popularity_power=0.5 --train.negative_popularity_from_epoch=5" ;;
    dns16_warm5_norm055) echo "--train.negative_candidates=16 --train.negative_candidate_epochs=5 --model.causal.backbone.norm_power=0.55" ;;
    dns16_warm5_norm060) echo "--train.negative_candidates=16 --train.negative_candidate_epochs=5 --model.causal.backbone.norm_power=0.6" ;;
    dns16_warm5_refit5) echo "--train.negative_candidates=16 --train.negative_candidate_epochs=5 --model.causal.backdoor.refit_start=10 --model.causal.backdoor.refit_every=5" ;;
    dns16_warm5_then2_norm060) echo "--train.negative_candidates=16 --train.negative_candidate_epochs=5 --train.negative_candidates_after=2 --model.causal.backbone.norm_power=0.6" ;;
    dns16_warm5_norm060_pop020) echo "--train.negative_candidates=16 --train.negative_candidate_epochs=5 --model.causal.backbone.norm_power=0.6 --eval.popularity_offset=-0.2" ;;
    dns16_warm5_norm065_pop020) echo "--train.negative_candidates=16 --train.negative_candidate_epochs=5 --model.causal.backbone.norm_power=0.65 --eval.popularity_offset=-0.2" ;;
    dns16_warm5_norm070_pop020) echo "--train.negative_candidates=16 --train.negative_candidate_epochs=5 --model.causal.backbone.norm_power=0.7 --eval.popularity_offset=-0.2" ;;
    hid128) echo "--model.causal.projection.hidden=128 --model.causal.diffusion.hidden=128" ;;
    hid256) echo "--model.causal.projection.hidden=256 --model.causal.diffusion.hidden=256" ;;
    keep70) echo "--model.causal.frontdoor.keep_ratio=0.7" ;;
    keep60) echo "--model.causal.frontdoor.keep_ratio=0.6" ;;
    mask60) echo "--model.causal.diffusion.self_mask_prob=0.6" ;;
    diffw03) echo "--model.causal.diffusion.loss_weight=0.3" ;;
    noise10) echo "--model.causal.diffusion.noise_scale=1.0" ;;
    mask60_noise10) echo "--model.causal.diffusion.self_mask_prob=0.6 --model.causal.diffusion.noise_scale=1.0" ;;
    noise30) echo "--model.causal.diffusion.noise_scale=3.0" ;;
    noise100) echo "--model.causal.diffusion.noise_scale=10.0" ;;
    lr2e3) echo "--train.learning_rate=2e-3" ;;
    then2) echo "--train.negative_candidates_after=2" ;;
    wa90) echo "--train.weight_average_decay=0.9" ;;
    wa97) echo "--train.weight_average_decay=0.97" ;;
    center) echo "--model.causal.backdoor.center=true" ;;
    center0) echo "--model.causal.backdoor.center=true --model.causal.backdoor.center_decay=0" ;;
    topo_bpr) echo "--model.causal.frontdoor.topo_loss=bpr" ;;
    cl_mediator) echo "--model.causal.contrast.view=mediator" ;;
    cl10) echo "--model.causal.contrast.loss_weight=0.1" ;;
    cl025) echo "--model.causal.contrast.loss_weight=0.025" ;;
    steps10) echo "--model.causal.diffusion.steps=10" ;;
    gate03) echo "--model.causal.gate_init=0.3" ;;
    ortho0) echo "--model.causal.diffusion.ortho_weight=0" ;;
    fdwarm5) echo "--model.causal.frontdoor.warmup_epochs=5" ;;
    fdwarm20) echo "--model.causal.frontdoor.warmup_epochs=20" ;;
    ortho10) echo "--model.causal.diffusion.ortho_weight=0.1" ;;
    diffw003) echo "--model.causal.diffusion.loss_weight=0.03" ;;
    pdrop10) echo "--model.causal.projection.dropout=0.1" ;;
    pdrop30) echo "--model.causal.projection.dropout=0.3" ;;
    cl_t04) echo "--model.causal.contrast.temperature=0.4" ;;
    dlr5e4) echo "--train.dense_learning_rate=5e-4" ;;
    dlr45e4) echo "--train.dense_learning_rate=4.5e-3" ;;
    tlr1e3) echo "--train.learning_rate=1e-3 --train.dense_learning_rate=1.5e-3" ;;
    tlr2e3) echo "--train.learning_rate=2e-3 --train.dense_learning_rate=1.5e-3" ;;
    detach_content) echo "--model.causal.detach_content=true" ;;
    init_n005) echo "--model.init=normal --model.init_std=0.005" ;;
    init_n0015) echo "--model.init=normal --model.init_std=0.0015" ;;
    init_n10) echo "--model.init=normal --model.init_std=0.1" ;;
    init_n03) echo "--model.init=normal --model.init_std=0.03" ;;
    cl_mediator_t1) echo "--model.causal.contrast.view=mediator --model.causal.contrast.temperature=1.0 --model.causal.contrast.loss_weight=0.25" ;;
    cl_mediator_w01) echo "--model.causal.contrast.view=mediator --model.causal.contrast.loss_weight=0.01" ;;
    fdl3) echo "--model.causal.frontdoor.num_layers=3" ;;
    refresh2) echo "--model.causal.frontdoor.refresh_every=2" ;;
    unweighted) echo "--model.causal.frontdoor.weighted=false" ;;
    *) echo "error: unknown variant '$1'" >&2; return 1 ;;
  esac
}
train_variants configs/tiktok_causal.yaml tiktok_causal override
