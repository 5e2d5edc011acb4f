"""Schedulers, sigma tools and model-sampling variants checked against ComfyUI 0.3.64's own numbers.

REF was measured once, ad hoc, by running ComfyUI 0.3.64's functions (comfy_extras.nodes_custom_sampler,
nodes_align_your_steps, nodes_gits, nodes_optimalsteps, nodes_model_advanced, comfy.model_sampling) in
its own venv with the same inputs as below; the numbers are hard-coded here so the test needs no ComfyUI.
"""
from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from hearth.nodes.builtin import custom_sampler as N  # noqa: E402
from hearth.nodes.builtin import model_advanced as MA  # noqa: E402
from hearth.nodes.builtin import sampling_extras as X  # noqa: E402
from hearth.sampling.model_sampling import DiscreteSampling  # noqa: E402

REF = {'karras': [14.614643096923828, 4.796541213989258, 1.2741049528121948, 0.24795149266719818, 0.029167499393224716,
            0.0],
 'exponential': [14.614643096923828, 3.0889861583709717, 0.6528956294059753, 0.1379975974559784,
                 0.029167501255869865, 0.0],
 'polyexp': [14.614640235900879, 1.6539729833602905, 0.26269635558128357, 0.06344324350357056, 0.029167501255869865,
             0.0],
 'laplace': [14.614642143249512, 1.4141993522644043, 1.0, 0.7071138620376587, 0.029167499393224716],
 'vp': [152.16697692871094, 17.04911994934082, 3.4222450256347656, 0.9575265049934387, 0.010485993698239326, 0.0],
 'basic_karras_06': [2.232154369354248, 0.6925705671310425, 0.16975659132003784, 0.0291671771556139, 0.0],
 'basic_normal': [14.614640235900879, 2.918307065963745, 0.9323579668998718, 0.029167160391807556, 0.0],
 'turbo_2': [14.614640235900879, 8.302803039550781, 0.0],
 'turbo_2_05': [1.6128861904144287, 1.1605783700942993, 0.0],
 'beta': [14.614641189575195, 4.8844757080078125, 1.6128861904144287, 0.6649985313415527, 0.25557273626327515, 0.0],
 'pct_03': 3.325068950653076,
 'pct_0_actual': 14.614641189575195,
 'pct_1_actual': 0.029167158529162407,
 'split_denoise': [[10.0, 5.0, 2.0, 1.0], [1.0, 0.5, 0.0]],
 'extend_cos': [10.0, 7.5, 5.669873237609863, 5.0, 3.5, 2.4019241333007812, 2.0, 1.5, 1.1339746713638306, 1.0, 0.5,
                0.0],
 'extend_sine': [10.0, 5.0, 4.1213202476501465, 2.0, 1.7071068286895752, 1.0, 0.8535534143447876, 0.5,
                 0.3535533845424652, 0.0],
 'ays_sd1_10': [14.614641189575195, 6.474575996398926, 3.8636746406555176, 2.694615125656128, 1.8841921091079712,
                1.3943804502487183, 0.9642583727836609, 0.6523686051368713, 0.39774563908576965,
                0.15152326226234436, 0.0],
 'ays_sdxl_7_05': [1.1816651821136475, 0.629469633102417, 0.3542882204055786, 0.15291865170001984, 0.0],
 'gits_12_10': [14.614641189575195, 5.85520076751709, 2.8448498249053955, 1.6705001592636108, 1.0889533758163452,
                0.748070478439331, 0.501183807849884, 0.32104822993278503, 0.1989491581916809, 0.09824532270431519,
                0.0],
 'gits_085_25_08': [11.545418739318848, 11.03205394744873, 10.546647071838379, 10.087467193603516,
                    9.652896881103516, 9.241425514221191, 8.853015899658203, 8.484840393066406, 8.135689735412598,
                    7.804433822631836, 7.490016460418701, 6.910764217376709, 6.2064008712768555, 5.341740608215332,
                    4.386980056762695, 3.4613945484161377, 2.625927448272705, 1.870873212814331, 1.1470537185668945,
                    0.3797442615032196, 0.0],
 'opt_flux_6': [0.9968000054359436, 0.9841282963752747, 0.971990704536438, 0.9470999836921692, 0.85677170753479,
                0.4402220845222473, 0.0],
 'lcm_sigma_minmax': [0.13445067405700684, 14.614641189575195],
 'lcm_timestep': [999.0, 359.0, 19.0],
 'lcm_pct_05': 1.6155933141708374,
 'lcm_denoised': [-2.5, -1.8714286088943481, -1.2428572177886963, -0.6142856478691101, 0.1342857927083969,
                  0.4428574740886688, 0.7514291405677795, 1.0600007772445679],
 'zsnr_minmax': [0.029167158529162407, 4518.763671875],
 'edm_pct_03': 4.42319291496207,
 'edm_timestep': [1.0955066680908203, -0.1732867956161499],
 'edm_denoised': [0.21957147121429443, 0.17092810571193695, 0.12228474766016006, 0.07364137470722198,
                  0.1311110556125641, 0.3561941683292389, 0.5812773108482361, 0.8063604235649109],
 'edm_input': [-0.32879799604415894, -0.23485571146011353, -0.14091341197490692, -0.04697112739086151,
               0.26527899503707886, 0.7958371639251709, 1.3263953924179077, 1.856953501701355],
 'v_timestep': [0.992042601108551, 0.2951672375202179],
 'v_pct_03': 27.065460060038514,
 'v_basic_karras': [500.00018310546875, 18.562908172607422, 0.03000001795589924, 0.0],
 'v_basic_normal': [499.9869079589844, 1.0283902883529663, 0.029999997466802597, 0.0]}

REF_MORE = {'rflow_pct_03': 3.330212760754133,
 'rflow_timestep': [0.9876543283462524, 0.3333333432674408],
 'rflow_sigma': [1.0, 80.0],
 'rflow_denoised': [-0.625, -0.46785715222358704, -0.3107143044471741, -0.15357141196727753, 0.11190473288297653,
                    0.3690476417541504, 0.6261905431747437, 0.8833333849906921],
 'rflow_input': [-0.25, -0.1785714328289032, -0.1071428507566452, -0.035714276134967804, 0.11904758960008621,
                 0.3571428656578064, 0.5952381491661072, 0.8333333730697632],
 'rflow_noise_scaling': [0.5, 0.44285714626312256, 0.3857143521308899, 0.3285714387893677, 0.27142849564552307,
                         0.21428565680980682, 0.15714281797409058, 0.09999996423721313],
 'playground_in': [-0.020170263946056366, -0.0044705066829919815, 0.011229251511394978, 0.026929015293717384,
                   -0.23883748054504395, -0.21624703705310822, -0.19365659356117249, -0.17106615006923676,
                   0.11575416475534439, 0.13611102104187012, 0.15646788477897644, 0.17682473361492157,
                   -0.12576724588871002, -0.10027279704809189, -0.07477836310863495, -0.04928393289446831],
 'playground_out': [-35.628196716308594, -31.098758697509766, -26.569318771362305, -22.039878845214844,
                    -9.131440162658691, -5.983599662780762, -2.835759162902832, 0.31208109855651855,
                    0.3636120557785034, 3.856839179992676, 7.3500657081604, 10.843292236328125, 15.067258834838867,
                    17.85654067993164, 20.64582061767578, 23.435100555419922]}


class _Model:
    def __init__(self, ms):
        self.model_sampling = ms
        self.model_options = {}

    def clone(self):
        return _Model(self.model_sampling)


def _l(t):
    return [float(v) for v in t]


def ours() -> dict:
    m = _Model(DiscreteSampling())
    r = {}
    r["karras"] = _l(N.KarrasScheduler().get_sigmas(5, 14.614642, 0.0291675, 7.0)[0])
    r["exponential"] = _l(N.ExponentialScheduler().get_sigmas(5, 14.614642, 0.0291675)[0])
    r["polyexp"] = _l(N.PolyexponentialScheduler().get_sigmas(5, 14.614642, 0.0291675, 1.5)[0])
    r["laplace"] = _l(N.LaplaceScheduler().get_sigmas(5, 14.614642, 0.0291675, 0.0, 0.5)[0])
    r["vp"] = _l(N.VPScheduler().get_sigmas(5, 19.9, 0.1, 0.001)[0])
    r["basic_karras_06"] = _l(N.BasicScheduler().get_sigmas(m, "karras", 4, 0.6)[0])
    r["basic_normal"] = _l(N.BasicScheduler().get_sigmas(m, "normal", 4, 1.0)[0])
    r["turbo_2"] = _l(N.SDTurboScheduler().get_sigmas(m, 2, 1.0)[0])
    r["turbo_2_05"] = _l(N.SDTurboScheduler().get_sigmas(m, 2, 0.5)[0])
    r["beta"] = _l(N.BetaSamplingScheduler().get_sigmas(m, 5, 0.5, 0.7)[0])
    r["pct_03"] = N.SamplingPercentToSigma().get_sigma(m, 0.3, False)[0]
    r["pct_0_actual"] = N.SamplingPercentToSigma().get_sigma(m, 0.0, True)[0]
    r["pct_1_actual"] = N.SamplingPercentToSigma().get_sigma(m, 1.0, True)[0]
    s = torch.tensor([10.0, 5.0, 2.0, 1.0, 0.5, 0.0])
    r["split_denoise"] = [_l(x) for x in N.SplitSigmasDenoise().get_sigmas(s, 0.4)]
    r["extend_cos"] = _l(N.ExtendIntermediateSigmas().extend(s, 3, -1.0, 1.5, "cosine")[0])
    r["extend_sine"] = _l(N.ExtendIntermediateSigmas().extend(s, 2, 6.0, 0.0, "sine")[0])
    r["ays_sd1_10"] = _l(X.AlignYourStepsScheduler().get_sigmas("SD1", 10, 1.0)[0])
    r["ays_sdxl_7_05"] = _l(X.AlignYourStepsScheduler().get_sigmas("SDXL", 7, 0.5)[0])
    r["gits_12_10"] = _l(X.GITSScheduler().get_sigmas(1.2, 10, 1.0)[0])
    r["gits_085_25_08"] = _l(X.GITSScheduler().get_sigmas(0.85, 25, 0.8)[0])
    r["opt_flux_6"] = _l(X.OptimalStepsScheduler().get_sigmas("FLUX", 6, 1.0)[0])
    lcm = MA.ModelSamplingDiscrete().patch(m, "lcm", False)[0].model_sampling
    r["lcm_sigma_minmax"] = [float(lcm.sigma_min), float(lcm.sigma_max)]
    r["lcm_timestep"] = _l(lcm.timestep(torch.tensor([14.0, 1.0, 0.1])))
    r["lcm_pct_05"] = lcm.percent_to_sigma(0.5)
    x = torch.linspace(-1, 1, 8).reshape(2, 1, 2, 2)
    out = torch.linspace(0.5, -0.3, 8).reshape(2, 1, 2, 2)
    sig = torch.tensor([3.0, 0.2])
    r["lcm_denoised"] = _l(lcm.calculate_denoised(sig, out, x).flatten())
    z = MA.ModelSamplingDiscrete().patch(m, "v_prediction", True)[0].model_sampling
    r["zsnr_minmax"] = [float(z.sigma_min), float(z.sigma_max)]
    e = MA.ModelSamplingContinuousEDM().patch(m, "edm", 120.0, 0.002)[0].model_sampling
    r["edm_pct_03"] = e.percent_to_sigma(0.3)
    r["edm_timestep"] = _l(e.timestep(torch.tensor([80.0, 0.5])))
    r["edm_denoised"] = _l(e.calculate_denoised(sig, out, x).flatten())
    r["edm_input"] = _l(e.calculate_input(sig, x).flatten())
    v = MA.ModelSamplingContinuousV().patch(m, "v_prediction", 500.0, 0.03)[0].model_sampling
    r["v_timestep"] = _l(v.timestep(torch.tensor([80.0, 0.5])))
    r["v_pct_03"] = v.percent_to_sigma(0.3)
    r["v_basic_karras"] = _l(N.BasicScheduler().get_sigmas(_Model(v), "karras", 3, 1.0)[0])
    r["v_basic_normal"] = _l(N.BasicScheduler().get_sigmas(_Model(v), "normal", 3, 1.0)[0])
    return r


def _close(a, b) -> bool:
    if isinstance(a, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-7)


def test_numbers_match_comfyui():
    got = ours()
    assert set(got) == set(REF)
    wrong = {k: (got[k], REF[k]) for k in REF if not _close(got[k], REF[k])}
    assert not wrong


def test_cosmos_rflow_and_playground_match_comfyui():
    m = _Model(DiscreteSampling())
    patched = MA.ModelSamplingContinuousEDM().patch(m, "cosmos_rflow", 80.0, 0.002)[0]
    c = patched.model_sampling
    x = torch.linspace(-1, 1, 8).reshape(2, 1, 2, 2)
    out = torch.linspace(0.5, -0.3, 8).reshape(2, 1, 2, 2)
    sig = torch.tensor([3.0, 0.2])
    got = {
        "rflow_pct_03": c.percent_to_sigma(0.3),
        "rflow_timestep": _l(c.timestep(torch.tensor([80.0, 0.5]))),
        "rflow_sigma": [float(c.sigma(torch.tensor(0.5))), float(c.sigma(torch.tensor(0.999)))],
        "rflow_denoised": _l(c.calculate_denoised(sig, out, x).flatten()),
        "rflow_input": _l(c.calculate_input(sig, x).flatten()),
        "rflow_noise_scaling": _l(c.noise_scaling(torch.tensor(3.0), out.clone(), x, max_denoise=True).flatten()),
    }
    pg = MA.ModelSamplingContinuousEDM().patch(m, "edm_playground_v2.5", 80.0, 0.002)[0]
    fmt = pg.model_options["latent_format"]
    lat = torch.linspace(-2, 2, 16).reshape(1, 4, 2, 2)
    got["playground_in"] = _l(fmt.process_in(lat).flatten())
    got["playground_out"] = _l(fmt.process_out(lat).flatten())
    wrong = {k: (got[k], REF_MORE[k]) for k in REF_MORE if not _close(got[k], REF_MORE[k])}
    assert not wrong and set(got) == set(REF_MORE)


def test_split_flip_set_first_sigma_exact():
    s = torch.tensor([10.0, 5.0, 2.0, 1.0, 0.0])
    high, low = N.SplitSigmas().get_sigmas(s, 2)
    assert high.tolist() == [10.0, 5.0, 2.0] and low.tolist() == [2.0, 1.0, 0.0]
    high, low = N.SplitSigmas().get_sigmas(s, 0)
    assert high.tolist() == [10.0] and low.tolist() == s.tolist()
    high, low = N.SplitSigmasDenoise().get_sigmas(s, 0.5)
    assert high.tolist() == [10.0, 5.0, 2.0] and low.tolist() == [2.0, 1.0, 0.0]
    (flipped,) = N.FlipSigmas().get_sigmas(s.clone())
    assert torch.allclose(flipped, torch.tensor([0.0001, 1.0, 2.0, 5.0, 10.0]))
    assert N.FlipSigmas().get_sigmas(torch.tensor([]))[0].numel() == 0
    (first,) = N.SetFirstSigma().set_first_sigma(s, 136.0)
    assert first.tolist() == [136.0, 5.0, 2.0, 1.0, 0.0] and s[0] == 10.0  # the input is not changed
    (ext,) = N.ExtendIntermediateSigmas().extend(s, 2, -1.0, 0.0, "linear")
    assert ext.tolist() == [10.0, 7.5, 5.0, 3.5, 2.0, 1.5, 1.0, 0.5, 0.0]


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError):
        N.SplitSigmas().get_sigmas([1.0, 0.0], 1)
    with pytest.raises(ValueError):
        X.GITSScheduler().get_sigmas(0.82, 10, 1.0)
    with pytest.raises(ValueError):
        MA.ModelSamplingContinuousEDM().patch(_Model(DiscreteSampling()), "flow", 120.0, 0.002)
    with pytest.raises(ValueError):
        MA.ModelSamplingContinuousEDM().patch(_Model(DiscreteSampling()), "edm", 120.0, 0.0)
    with pytest.raises(ValueError):
        N.ExponentialScheduler().get_sigmas(4, 14.6, 0.0)


def test_table_schedulers_shapes():
    (ays,) = X.AlignYourStepsScheduler().get_sigmas("SVD", 25, 1.0)
    assert ays.shape == (26,) and ays[-1] == 0 and float(ays[0]) == pytest.approx(700.0)
    assert X.AlignYourStepsScheduler().get_sigmas("SD1", 10, 0.0)[0].numel() == 0
    (opt,) = X.OptimalStepsScheduler().get_sigmas("Wan", 20, 1.0)
    assert opt.shape == (21,) and torch.all(opt[:-1] > opt[1:])


# First six values of each guidance hook's output for the inputs below, measured ad hoc with ComfyUI 0.3.64's
# own nodes (nodes_cfg, nodes_eps, nodes_apg, nodes_model_advanced.RescaleCFG) on the same tensors.
HOOKS_REF = {
    "zero": [0.096037, -1.545856, 7.254032, 2.163786, 5.980207, 2.948826],
    "norm": [0.080507, -0.681803, 1.36018, 0.321614, 1.561548, 0.325236],
    "eps": [0.172236, -1.063585, 9.264287, 2.611487, 4.486255, 2.750968],
    "apg": [-0.022691, -0.371055, 0.063159, 0.07635, 1.277508, 0.422147],
    "rescale": [-1.084721, -0.548652, -4.420452, -1.570876, -1.273212, -0.627309],
}


def test_guidance_hooks_match_comfyui():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 3, 3, generator=g)
    cd = torch.randn(2, 4, 3, 3, generator=g)
    ud = torch.randn(2, 4, 3, 3, generator=g)
    sigma, scale = torch.tensor([2.0, 0.5]), 4.0
    den = ud + (cd - ud) * scale

    def post_args():
        return {"denoised": den.clone(), "cond_denoised": cd, "uncond_denoised": ud, "cond_scale": scale,
                "input": x, "sigma": sigma, "cond": None, "uncond": None, "model": None, "model_options": {}}

    def pre_args(s=sigma):
        return {"conds_out": [cd, ud], "cond_scale": scale, "sigma": s, "timestep": s, "input": x,
                "conds": [None, None], "model": None, "model_options": {}}

    def hook(patched, key):
        value = patched.model_options[key]
        return value[-1] if isinstance(value, list) else value

    m = _Model(DiscreteSampling())
    post = "sampler_post_cfg_function"
    got = {
        "zero": hook(X.CFGZeroStar().patch(m)[0], post)(post_args()),
        "norm": hook(X.CFGNorm().patch(m, 0.8)[0], post)(post_args()),
        "eps": hook(X.EpsilonScaling().patch(m, 1.01)[0], post)(post_args()),
        "rescale": hook(MA.RescaleCFG().patch(m, 0.7)[0], "sampler_cfg_function")(
            {"cond": x - cd, "uncond": x - ud, "cond_scale": scale, "timestep": sigma, "input": x, "sigma": sigma,
             "cond_denoised": cd, "uncond_denoised": ud, "model": None, "model_options": {}}),
    }
    apg = hook(X.APG().patch(m, 0.5, 3.0, 0.4)[0], "sampler_pre_cfg_function")
    first = apg(pre_args())
    apg(pre_args(torch.tensor([1.0, 0.2])))  # momentum carries over while sigma falls …
    apg(pre_args(torch.tensor([5.0, 1.0])))  # … and resets when it rises (a new run)
    got["apg"] = first[0]
    for key, ref in HOOKS_REF.items():
        assert _close([round(v, 6) for v in _l(got[key].flatten()[:6])], ref), key
    assert m.model_options == {}  # the input model is not patched


def test_noise_values():
    from hearth.sampling.noise import prepare_noise

    latent = {"samples": torch.zeros(2, 4, 3, 3)}
    (noise,) = N.RandomNoise().get_noise(42)
    assert noise.seed == 42 and torch.equal(noise.generate_noise(latent), prepare_noise(latent["samples"], 42))
    # a latent taken out of a larger batch gets the draw its index has in that batch (per-item draws)
    picked = noise.generate_noise({"samples": torch.zeros(1, 4, 3, 3), "batch_index": [1]})
    assert torch.equal(picked[0], prepare_noise(latent["samples"], 42, [0, 1])[1])
    (empty,) = N.DisableNoise().get_noise()
    assert empty.seed == 0 and not empty.generate_noise(latent).any()


def test_sampler_values_carry_their_options():
    (s,) = N.SamplerDPMPP_2M_SDE().get_sampler("heun", 0.5, 1.2, "cpu")
    assert s.sampler_function.__name__ == "sample_dpmpp_2m_sde"
    assert s.extra_options == {"eta": 0.5, "s_noise": 1.2, "solver_type": "heun"}
    (s,) = N.KSamplerSelect().get_sampler("ddim")
    assert s.inpaint_options == {"random": True}
    (s,) = N.SamplerER_SDE().get_sampler("ODE", 2, 0.7, 1.0)
    assert s.extra_options["s_noise"] == 0 and s.extra_options["noise_scaler"](torch.tensor(2.0)) == 2.0
    (s,) = N.SamplerSASolver().get_sampler(_Model(DiscreteSampling()), 0.7, 0.2, 0.8, 1.0, 3, 4, False, True)
    tau = s.extra_options["tau_func"]
    assert tau(torch.tensor(1.0)) == 0.7 and tau(100.0) == 0.0 and tau(0.001) == 0.0
    with pytest.raises(ValueError):
        N.KSamplerSelect().get_sampler("no_such_sampler")


def test_sampler_custom_advanced_rejects_bad_inputs():
    from hearth.sampling.custom import EmptyNoise
    from hearth.sampling.ksampler import CFGGuider, sampler_object

    guider = CFGGuider(_Model(DiscreteSampling()))
    with pytest.raises(ValueError):
        N.SamplerCustomAdvanced().sample(EmptyNoise(), guider, sampler_object("euler"), "not sigmas",
                                         {"samples": torch.zeros(1, 4, 8, 8)})
    with pytest.raises(ValueError):
        N.SamplerCustomAdvanced().sample(EmptyNoise(), guider, sampler_object("euler"), torch.tensor([1.0, 0.0]),
                                         {"not_samples": 1})
