"""The SFT trainer a run uses: TRL's ``SFTTrainer`` counting the tokens it trains on, plus the KL term of
KL-regularised SFT — KL(reference || trained) per token over a separate dataset, the reference being the
same weights with the adapter switched off. Built on first use, so importing this module imports no trl.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def make_trainer_class() -> type:
    """SFTTrainer that counts the trained tokens it sees and adds the KL term. Built on first use so
    importing this module does not import trl."""
    import torch
    from trl import SFTTrainer

    class EmSFTTrainer(SFTTrainer):
        kl_weight: float = 0.0
        kl_batches: Callable[[int], dict[str, Any]] | None = None
        trained_tokens: int = 0
        micro_steps: int = 0

        def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                         num_items_in_batch: Any = None) -> Any:
            if model.training:
                labels = inputs.get("labels")
                if labels is not None:  # the tokens whose loss counts (the first is never predicted)
                    self.trained_tokens += int((labels[:, 1:] != -100).sum().item())
            out = super().compute_loss(model, inputs, return_outputs=return_outputs,
                                       num_items_in_batch=num_items_in_batch)
            if not model.training or self.kl_batches is None:
                return out
            loss = out[0] if return_outputs else out
            batch = self.kl_batches(self.micro_steps)
            self.micro_steps += 1
            kl = self._kl(model, batch, with_grad=self.kl_weight > 0)
            self._metrics["train"]["kl"].append(float(kl.detach().item()))
            if self.kl_weight > 0:
                scaled = self.loss_is_scaled_for_ga if self.loss_is_scaled_for_ga is not None else (
                    (self.model_accepts_loss_kwargs and num_items_in_batch is not None)
                    or self.compute_loss_func is not None)
                # the SFT loss of an accumulation window sums to its mean: so must the KL term
                term = self.kl_weight * kl / (self.current_gradient_accumulation_steps if scaled else 1)
                loss = loss + term
            return (loss, out[1]) if return_outputs else loss

        def _kl(self, model: Any, batch: dict[str, Any], *, with_grad: bool) -> Any:
            """KL(reference || trained) per token: summed over the vocabulary, averaged over the KL
            batch's trained positions. The reference is the same weights with the adapter off."""
            device = next(model.parameters()).device
            ids = batch["input_ids"].to(device)
            attn = batch["attention_mask"].to(device)
            mask = (batch["labels"] != -100).to(device)
            with torch.no_grad(), self.accelerator.unwrap_model(model).disable_adapter():
                ref = model(input_ids=ids, attention_mask=attn, use_cache=False).logits.float()
            ctx = torch.enable_grad() if with_grad else torch.no_grad()
            with ctx:
                cur = model(input_ids=ids, attention_mask=attn, use_cache=False).logits.float()
                ref_logp = torch.log_softmax(ref, dim=-1)
                cur_logp = torch.log_softmax(cur, dim=-1)
                per_pos = (ref_logp.exp() * (ref_logp - cur_logp)).sum(-1)
                # position t predicts token t+1: the trained positions are those whose next token is trained
                pred_mask = torch.zeros_like(mask)
                pred_mask[:, :-1] = mask[:, 1:]
                return (per_pos * pred_mask).sum() / pred_mask.sum().clamp(min=1)

    return EmSFTTrainer


def kl_batch_source(rows: list[dict[str, list[int]]], batch_size: int, seed: int,
                    pad_id: int) -> Callable[[int], dict[str, Any]]:
    """The KL batch of micro-step ``i``: a function of ``i`` alone (a seeded permutation walked in
    order), so a resumed run sees the very batches an uninterrupted one would."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(rows), generator=gen).tolist()

    def batch(i: int) -> dict[str, Any]:
        picked = [rows[order[(i * batch_size + k) % len(rows)]] for k in range(batch_size)]
        width = max(len(r["input_ids"]) for r in picked)
        ids = torch.full((len(picked), width), pad_id, dtype=torch.long)
        labels = torch.full((len(picked), width), -100, dtype=torch.long)
        attn = torch.zeros((len(picked), width), dtype=torch.long)
        for j, r in enumerate(picked):
            n = len(r["input_ids"])
            ids[j, :n] = torch.tensor(r["input_ids"])
            labels[j, :n] = torch.tensor(r["labels"])
            attn[j, :n] = 1
        return {"input_ids": ids, "labels": labels, "attention_mask": attn}

    return batch
